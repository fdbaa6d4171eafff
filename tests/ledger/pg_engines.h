/* pg_engines.h — several certforged instances ("engines") sharing one
 * PostgreSQL ledger, for the suites that need them (test_ledger_pg_daemon;
 * the CRL-across-engines test). Built on tests/support/cf_daemon.h:
 * one SoftHSM token and CA key for all engines, each engine with its own
 * socket, config and pipeline.serial_prefix, all on one fresh schema of
 * the database in $CF_TEST_PG_CONNINFO. The cluster behind
 * $CF_TEST_PG_DIR (tools/pg-cluster.sh, started by tools/test.sh) can be
 * stopped and started again. Test code only. */
#ifndef CF_PG_ENGINES_H
#define CF_PG_ENGINES_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "cf_daemon.h"

#define PGE_MAX 4

typedef struct pg_engines {
    unsigned n;           /* engines */
    char schema[64];      /* fresh per pge_init */
    char conninfo[700];   /* the engines' ledger.conninfo (search_path = schema) */
    const char *grants;   /* grants list for the configs, or NULL: the harness default */
    const char *pipeline; /* extra pipeline settings (serial_prefix is added), or NULL */
    const char *extra[PGE_MAX]; /* more top-level settings per engine (e.g. crl), or NULL */
    const char *ledger; /* ledger timeouts, or NULL: "busy_timeout_ms = 1000;" */
    char sock[PGE_MAX][100];
    char conf[PGE_MAX][400];
    unsigned prefix[PGE_MAX]; /* pipeline.serial_prefix of engine i: 0x0A + i */
    dproc d[PGE_MAX];
} pg_engines;

/* For a suite set-up: 0 when $CF_TEST_PG_CONNINFO names a server that
 * answers, else 1 after cf_test_skip() with the reason (the suite is
 * reported skipped). need_dir: also $CF_TEST_PG_DIR (a cluster this test
 * may stop and start). */
int pge_available(bool need_dir);
/* A fresh schema `name`_<pid> and n engine configs (not started). 0 or -1. */
int pge_init(pg_engines *e, const char *name, unsigned n);
/* Start / stop engine i (daemon_start_ex / daemon_stop of the harness). */
int pge_start(pg_engines *e, unsigned i);
int pge_stop(pg_engines *e, unsigned i, int sig);
void pge_stop_all(pg_engines *e);
/* A client of engine i (NULL on failure, reason on stderr). */
cf_client *pge_client(const pg_engines *e, unsigned i);
/* A side connection to the engines' schema (an auditor, the test); NULL
 * on failure. Free with PQfinish. */
PGconn *pge_db(const pg_engines *e);
/* One value of a query on a side connection (text, "" on error). */
void pge_value(const pg_engines *e, const char *sql, char *out, size_t len);
/* Stop / start the cluster at $CF_TEST_PG_DIR (tools/pg-cluster.sh). 0 or -1. */
int pge_cluster_stop(void);
int pge_cluster_start(void);
/* Drop the schema. */
void pge_cleanup(pg_engines *e);

#endif
