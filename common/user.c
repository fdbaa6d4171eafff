#include "common/user.h"

#include <pwd.h>
#include <stdio.h>
#include <string.h>

int cf_user_check(const char *name, char *why, size_t whylen)
{
    const struct passwd *pw = name && *name && strlen(name) < 64 ? getpwnam(name) : NULL;
    if (!pw) {
        snprintf(why, whylen,
                 "no user '%.64s' on this machine (create it, e.g. useradd --system "
                 "--no-create-home %.64s)",
                 name ? name : "", name && *name ? name : "certforge");
        return -1;
    }
    if (pw->pw_uid == 0) {
        snprintf(why, whylen, "'%.64s' is root: name an unprivileged user", name);
        return -1;
    }
    return 0;
}
