/* compiler.h — the attribute macros every layer uses. The one place they
 * are defined; nothing else here. */
#ifndef CF_COMPILER_H
#define CF_COMPILER_H

/* A fallible call whose result must not be dropped (STYLE.md: "results
 * the compiler will not let you drop"). */
#define CF_WUR __attribute__((warn_unused_result))

#endif
