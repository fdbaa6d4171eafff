/* The unprivileged user a daemon switches to (confine.user in the three
 * daemons' configs): checked when the config is loaded, so --check-config
 * and a refused start name the setting with FILE:LINE; the switch itself is
 * engine/confine's. */
#ifndef CF_USER_H
#define CF_USER_H

#include <stddef.h>

#include "common/compiler.h"

/* 0: NAME is a user on this machine and not uid 0. -1: why (into WHY) —
 * no such user (with how to create one), or root. */
CF_WUR int cf_user_check(const char *name, char *why, size_t whylen);

#endif
