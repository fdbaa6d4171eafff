/*
 * shim.h — the one non-PKCS#11 entry point of libcertforge-shim.so.
 *
 * The shim is a PKCS#11 module (see shim.c and docs/shim.md). Besides
 * C_GetFunctionList it exports cf_shim_control() so that an in-process test
 * can change the injected latency and faults of a running module:
 *
 *   void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
 *   cf_shim_control_fn *ctl = (cf_shim_control_fn *)dlsym(h, CF_SHIM_CONTROL_SYM);
 *   ctl("FAIL_EVERY_N", "5");
 */
#ifndef CF_SHIM_H
#define CF_SHIM_H

#define CF_SHIM_CONTROL_SYM "cf_shim_control"

/* Set one control key (the CF_SHIM_* names without the prefix, e.g.
 * "SIGN_LATENCY_US", "INVALIDATE_NOW", "REMOVE_NOW_MS", "RESET"). Returns
 * 0, or -1 for an unknown key, an environment-only key (MODULE, CONTROL)
 * or a malformed value. Takes effect immediately. Settings made here
 * outlive C_Finalize and win over the environment and the control file at
 * the next C_Initialize, until ("RESET", "1") drops them. */
typedef int cf_shim_control_fn(const char *key, const char *value);
int cf_shim_control(const char *key, const char *value);

#endif
