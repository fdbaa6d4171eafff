/* pg_engines.c — see pg_engines.h. */
#include "tests/ledger/pg_engines.h"

#include "cf_test.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void no_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static PGconn *side(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "\npostgresql: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, no_notices, NULL);
    return c;
}

int pge_available(bool need_dir)
{
    const char *ci = getenv("CF_TEST_PG_CONNINFO");
    if (!ci || !ci[0]) {
        cf_test_skip("CF_TEST_PG_CONNINFO is not set (tools/test.sh starts a throwaway cluster)");
        return 1;
    }
    if (need_dir && (!getenv("CF_TEST_PG_DIR") || !getenv("CF_TEST_PG_DIR")[0])) {
        cf_test_skip("CF_TEST_PG_DIR is not set (a cluster this test may stop and start, "
                     "tools/pg-cluster.sh)");
        return 1;
    }
    PGconn *c = side(ci);
    if (!c) {
        cf_test_skip("PostgreSQL at '%s' does not answer", ci);
        return 1;
    }
    PQfinish(c);
    return 0;
}

int pge_init(pg_engines *e, const char *name, unsigned n)
{
    const char *ci = getenv("CF_TEST_PG_CONNINFO");
    if (!ci || n == 0 || n > PGE_MAX)
        return -1;
    e->n = n;
    snprintf(e->schema, sizeof(e->schema), "%.40s_%ld", name, (long)getpid());
    snprintf(e->conninfo, sizeof(e->conninfo), "%s options=-csearch_path=%s", ci, e->schema);
    char sql[256];
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", e->schema,
             e->schema);
    PGconn *c = side(ci);
    if (!c)
        return -1;
    PGresult *r = PQexec(c, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
    if (rc)
        fprintf(stderr, "\n%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    if (rc)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        char ledger[1024], pipeline[512];
        e->prefix[i] = 0x0A + i;
        e->d[i].pid = 0;
        char sock[400];
        int sl = snprintf(sock, sizeof(sock), "%s/%.8s-e%u.sock", H.dir, name, i);
        if (sl < 0 || (size_t)sl >= sizeof(e->sock[i]))
            return -1; /* sun_path is short */
        memcpy(e->sock[i], sock, (size_t)sl + 1);
        snprintf(e->conf[i], sizeof(e->conf[i]), "%s/%s-e%u.conf", H.dir, name, i);
        snprintf(ledger, sizeof(ledger),
                 "ledger = { backend = \"postgresql\"; conninfo = \"%s\"; %s };\n", e->conninfo,
                 e->ledger ? e->ledger : "busy_timeout_ms = 1000;");
        snprintf(pipeline, sizeof(pipeline), "%s serial_prefix = 0x%02X;",
                 e->pipeline ? e->pipeline : "workers = 2; queue = 4096; batch = 16;",
                 e->prefix[i]);
        conf_opts o = {.grants = e->grants,
                       .pipeline = pipeline,
                       .socket = e->sock[i],
                       .ledger = ledger,
                       .extra = e->extra[i]};
        write_conf(e->conf[i], &o);
    }
    return 0;
}

int pge_start(pg_engines *e, unsigned i)
{
    return daemon_start(&e->d[i], e->conf[i], NULL);
}

int pge_stop(pg_engines *e, unsigned i, int sig)
{
    return daemon_stop(&e->d[i], sig, 20000);
}

void pge_stop_all(pg_engines *e)
{
    for (unsigned i = 0; i < e->n; i++)
        if (e->d[i].pid > 0)
            (void)pge_stop(e, i, SIGTERM);
}

cf_client *pge_client(const pg_engines *e, unsigned i)
{
    cf_client *c = NULL;
    char err[256];
    if (cf_client_connect(e->sock[i], &c, err, sizeof(err)) != 0)
        fprintf(stderr, "\nconnect to engine %u: %s\n", i, err);
    return c;
}

PGconn *pge_db(const pg_engines *e)
{
    return side(e->conninfo);
}

void pge_value(const pg_engines *e, const char *sql, char *out, size_t len)
{
    out[0] = 0;
    PGconn *c = pge_db(e);
    if (!c)
        return;
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        snprintf(out, len, "%s", PQgetvalue(r, 0, 0));
    else
        fprintf(stderr, "\n%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
}

static int cluster(const char *verb)
{
    const char *dir = getenv("CF_TEST_PG_DIR"), *src = getenv("CF_SOURCE_DIR");
    if (!dir || !src)
        return -1;
    return cf_sh("'%s/tools/pg-cluster.sh' %s '%s' >/dev/null", src, verb, dir) == 0 ? 0 : -1;
}

int pge_cluster_stop(void)
{
    return cluster("stop");
}

int pge_cluster_start(void)
{
    return cluster("start");
}

void pge_cleanup(pg_engines *e)
{
    pge_stop_all(e);
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", e->schema);
    PGconn *c = side(getenv("CF_TEST_PG_CONNINFO"));
    if (c) {
        PQclear(PQexec(c, sql));
        PQfinish(c);
    }
}
