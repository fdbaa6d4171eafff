/* certforge status — certforged's counters (STATUS, docs/protocol.md). */
#include "tools/certforge/cli.h"
#include "tools/certforge/cli_daemon.h"
#include "tools/certforge/commands.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char status_help[] =
    "usage: certforge status [--socket PATH] [--json]\n"
    "\n"
    "Asks certforged for its counters: uptime, certificates issued, the current rate\n"
    "(over the last 10 s), queue depth, requests in flight, connections, HSM\n"
    "sessions busy and in total, failed requests by status code, and the config\n"
    "generation with the outcome of the last SIGHUP reload. Counters a newer\n"
    "daemon adds are shown too.\n"
    "\n"
    "OPTIONS\n" CLI_SOCKET_HELP
    "  --json          machine-readable: {\"socket\", \"uptime_s\", \"issued\", \"rate_per_s\",\n"
    "                  \"queue_depth\", \"inflight\", \"connections\", \"hsm_sessions_busy\",\n"
    "                  \"hsm_sessions_total\", \"config_generation\", \"config_reload\"\n"
    "                  (none, ok, refused), \"config_reload_at\", \"errors\": {\"BAD_CSR\": N,\n"
    "                  ...}}; numbers as numbers\n"
    "  --timeout SECONDS  how long to wait for the answer (default 10)\n"
    "  --help          this text\n"
    "\n"
    "EXAMPLES\n"
    "  certforge status --socket /run/certforge/certforged.sock\n"
    "  certforge status --json | jq '.rate_per_s'\n"
    "\n"
    "EXIT STATUS\n"
    "  0  the counters were printed\n"
    "  1  certforged could not be reached or did not answer\n"
    "  2  usage error\n";

enum { OPT_SOCKET = 256, OPT_JSON, OPT_TIMEOUT, OPT_HELP };

#define ERR_PREFIX "errors."

/* A counter's text as a JSON number when it is one, else a string. */
static json_t *value_json(const char *v)
{
    if (*v) {
        char *end = NULL;
        errno = 0;
        long long i = strtoll(v, &end, 10);
        if (!errno && *end == 0)
            return json_integer(i);
        errno = 0;
        double d = strtod(v, &end);
        if (!errno && *end == 0)
            return json_real(d);
    }
    return json_string(v);
}

static const char *find(const cf_response *r, const char *key, char *buf, size_t cap)
{
    for (unsigned i = 0; i < r->n_kv; i++)
        if (r->kv[i].key.len == strlen(key) && memcmp(r->kv[i].key.p, key, r->kv[i].key.len) == 0) {
            cli_text_of(&r->kv[i].value, buf, cap);
            return buf;
        }
    return NULL;
}

static void uptime_text(const char *v, char *out, size_t cap)
{
    char *end = NULL;
    unsigned long long s = strtoull(v, &end, 10);
    if (!*v || *end) {
        snprintf(out, cap, "%s", v);
        return;
    }
    unsigned long long d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;
    if (d)
        snprintf(out, cap, "%llud %lluh %llum %llus", d, h, m, sec);
    else if (h)
        snprintf(out, cap, "%lluh %llum %llus", h, m, sec);
    else if (m)
        snprintf(out, cap, "%llum %llus", m, sec);
    else
        snprintf(out, cap, "%llus", sec);
}

static bool known_key(const char *k)
{
    static const char *const keys[] = {
        "uptime_s",          "issued",        "rate_per_s",        "queue_depth",
        "inflight",          "connections",   "hsm_sessions_busy", "hsm_sessions_total",
        "config_generation", "config_reload", "config_reload_at"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(k, keys[i]) == 0)
            return true;
    return strncmp(k, ERR_PREFIX, strlen(ERR_PREFIX)) == 0;
}

static int print_json(const char *socket, const cf_response *r)
{
    json_t *o = json_object(), *errs = json_object();
    int rc = CLI_FAIL;
    if (!o || !errs)
        goto out;
    json_object_set_new(o, "socket", json_string(socket));
    json_object_set_new(o, "client_version", json_string(CF_VERSION));
    for (unsigned i = 0; i < r->n_kv; i++) {
        char k[256], v[1024];
        cli_text_of(&r->kv[i].key, k, sizeof(k));
        cli_text_of(&r->kv[i].value, v, sizeof(v));
        if (strncmp(k, ERR_PREFIX, strlen(ERR_PREFIX)) == 0)
            json_object_set_new(errs, k + strlen(ERR_PREFIX), value_json(v));
        else
            json_object_set_new(o, k, value_json(v));
    }
    json_object_set(o, "errors", errs);
    /* reals as certforged wrote them ("0.2", not 0.20000000000000001) */
    if (json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12)) != 0)
        goto out;
    fputc('\n', stdout);
    rc = fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
out:
    json_decref(errs);
    json_decref(o);
    return rc;
}

static void print_text(const char *socket, const cf_response *r)
{
    char a[1024], b[1024], t[128];
    const char *v;
    printf("%-16s %s\n", "certforged", socket);
    if ((v = find(r, "uptime_s", a, sizeof(a)))) {
        uptime_text(v, t, sizeof(t));
        printf("%-16s %s\n", "uptime", t);
    }
    if ((v = find(r, "issued", a, sizeof(a))))
        printf("%-16s %s\n", "issued", v);
    if ((v = find(r, "rate_per_s", a, sizeof(a))))
        printf("%-16s %s certificates/s (last 10 s)\n", "rate", v);
    if ((v = find(r, "queue_depth", a, sizeof(a))))
        printf("%-16s %s\n", "queue depth", v);
    if ((v = find(r, "inflight", a, sizeof(a))))
        printf("%-16s %s\n", "in flight", v);
    if ((v = find(r, "connections", a, sizeof(a))))
        printf("%-16s %s\n", "connections", v);
    const char *busy = find(r, "hsm_sessions_busy", a, sizeof(a));
    const char *total = find(r, "hsm_sessions_total", b, sizeof(b));
    if (busy || total)
        printf("%-16s %s busy of %s\n", "HSM sessions", busy ? busy : "?", total ? total : "?");
    const char *gen = find(r, "config_generation", a, sizeof(a));
    if (gen) {
        const char *res = find(r, "config_reload", b, sizeof(b));
        printf("%-16s generation %s", "config", gen);
        if (res && strcmp(res, "none") != 0) {
            char at[64];
            const char *when = find(r, "config_reload_at", at, sizeof(at));
            printf(" (last reload %s at %s)", res, when ? when : "?");
        } else {
            printf(" (not reloaded)");
        }
        printf("\n");
    }
    printf("%-16s", "errors");
    unsigned nerr = 0;
    for (unsigned i = 0; i < r->n_kv; i++) {
        cli_text_of(&r->kv[i].key, a, sizeof(a));
        if (strncmp(a, ERR_PREFIX, strlen(ERR_PREFIX)) != 0)
            continue;
        cli_text_of(&r->kv[i].value, b, sizeof(b));
        printf("%s%s %s", nerr++ ? ", " : " ", a + strlen(ERR_PREFIX), b);
    }
    printf("%s\n", nerr ? "" : " none");
    for (unsigned i = 0; i < r->n_kv; i++) {
        cli_text_of(&r->kv[i].key, a, sizeof(a));
        if (known_key(a))
            continue;
        cli_text_of(&r->kv[i].value, b, sizeof(b));
        printf("%-16s %s\n", a, b);
    }
}

int cmd_status(int argc, char **argv)
{
    static const struct option lo[] = {{"socket", required_argument, NULL, OPT_SOCKET},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {"timeout", required_argument, NULL, OPT_TIMEOUT},
                                       {"help", no_argument, NULL, OPT_HELP},
                                       {0, 0, 0, 0}};
    const char *socket = NULL;
    bool json = false;
    unsigned long timeout = 10;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case OPT_SOCKET:
            socket = optarg;
            break;
        case OPT_JSON:
            json = true;
            break;
        case OPT_TIMEOUT:
            if (!cli_parse_uint(optarg, 1, 3600, &timeout))
                return cli_usage("status: --timeout must be 1-3600 seconds, not '%s'", optarg);
            break;
        case OPT_HELP:
            fputs(status_help, stdout);
            return CLI_OK;
        default:
            return cli_bad_option("status", argc, argv);
        }
    }
    if (optind < argc)
        return cli_usage("status: unexpected argument '%s'", argv[optind]);
    socket = cli_socket_path(socket);
    cf_client *cl = NULL;
    int rc = cli_connect("status", socket, &cl);
    if (rc != CLI_OK)
        return rc;
    cf_response r;
    int q = cf_client_status(cl, (int)timeout * 1000, &r);
    rc = cli_answer("status", socket, cl, q, timeout, &r);
    if (rc == CLI_OK && json)
        rc = print_json(socket, &r);
    else if (rc == CLI_OK)
        print_text(socket, &r);
    cf_client_close(cl);
    return rc;
}
