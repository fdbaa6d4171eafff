/* certforge-agent — the shared ACME client for Network Functions that
 * cannot speak ACME: EST (RFC 7030) towards the NFs, ACME (RFC 8555)
 * towards any ACME server, one ACME account per NF (docs/agent.md). */
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include "acme/anchors.h"
#include "acme/tkauth.h"
#include "agent/agent.h"
#include "agent/config.h"
#include "agent/state.h"
#include "common/duration.h"
#include "common/outfile.h"
#include "engine/confine/confine.h"
#include "hsm/hsm.h"

#ifndef CF_VERSION
#define CF_VERSION "0.1.0"
#endif

static volatile sig_atomic_t stop_sig;

static void on_signal(int s)
{
    stop_sig = s;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: certforge-agent --config FILE [--check]\n"
            "       certforge-agent --config FILE nf add --nf-instance-id UUID [--dns NAME]...\n"
            "                                   [--eab-kid KID --eab-hmac-key-file FILE] [--star LIFETIME]\n"
            "       certforge-agent --config FILE nf remove UUID\n"
            "       certforge-agent --config FILE nf import FILE.jsonl\n"
            "       certforge-agent --config FILE nf show UUID\n"
            "       certforge-agent --config FILE nf list\n"
            "       certforge-agent --version | --help\n"
            "\n"
            "NAME\n"
            "  certforge-agent - the shared ACME client that enrols Network Functions which cannot\n"
            "  speak ACME: they enrol over EST (RFC 7030, TLS with client authentication); the agent\n"
            "  holds an ACME account per NF, orders its identifiers (NfInstanceId through tkauth-01\n"
            "  with the OAM's authority token, dns names through dns-01 with RFC 2136 updates signed\n"
            "  with TSIG), finalizes with the NF's own CSR and hands the certificate back. It renews\n"
            "  ahead of time (ARI, RFC 9773, or renew_at of the lifetime) so that the renewed\n"
            "  certificate is ready at the NF's next /simplereenroll.\n"
            "\n"
            "DAEMON\n"
            "  --config FILE   run in the foreground; one key=value line per event on stderr\n"
            "  --check         load the configuration (and the files it names), report, exit\n"
            "  SIGTERM, SIGINT stop: no new connections, steps in progress end, the state is\n"
            "                  committed, exit 0. Every unfinished enrolment resumes at the next start.\n"
            "\n"
            "EST (the NFs' side), under https://LISTEN/.well-known/est/\n"
            "  GET  cacerts          the operator's CA certificates (PKCS#7 certs-only, base64)\n"
            "  POST simpleenroll     base64 PKCS#10 (application/pkcs10); first enrolment with a\n"
            "                        bootstrap client certificate (chain to bootstrap.trust_anchors,\n"
            "                        URI SAN urn:uuid:<NF instance ID>) or 'Authorization: Bearer\n"
            "                        <OAM authority token>' (RFC 9447 atc for the NfInstanceId, bound\n"
            "                        to the NF's ACME account key: see 'nf add')\n"
            "  POST simplereenroll   the NF's current certificate (issued through this agent) as TLS\n"
            "                        client certificate; the CSR names what that certificate names\n"            "  GET  csrattrs         what the NF's CSR should carry (RFC 7030 §4.5, base64 DER\n"
            "                        CsrAttrs): the subjectAltName it may ask for (extensionRequest)\n"
            "                        and the key type (est.key_type); the same credentials as\n"
            "                        simpleenroll. serverkeygen, fullcmc: 501 (NF keys stay on the NF)\n"
            "  Answers: 200 the certificate (PKCS#7 certs-only); 202 + Retry-After: in progress, send\n"
            "  the same request again; 503 + Retry-After: the ACME server is unreachable or failing,\n"
            "  the agent retries with backoff; 401 no or bad credential (expired/replayed token);\n"
            "  403 the CSR names what the NF may not have, its key belongs to another NF (or is not\n"
            "  the NF's STAR order's), the NF is not registered, or the ACME server refused; 400 not\n"
            "  a CSR; 415 wrong content type.\n"
            "\n"
            "NF REGISTRY\n"
            "  nf add --nf-instance-id UUID [--dns NAME]... [--eab-kid KID --eab-hmac-key-file FILE]\n"
            "         [--star LIFETIME]\n"
            "        register an NF (or change its names) and make its ACME account key (EC P-256,\n"
            "        kept in the state, or made in acme.account_key_token); prints {\"nf_instance_id\",\n"
            "        \"dns\", \"account_key_thumbprint\", \"fingerprint\"}: the OAM issues the NF's token for\n"
            "        that thumbprint, e.g.\n"
            "        certforge acme token issue ... --nf-instance-id UUID --account-key-thumbprint T\n"
            "        --eab-kid, --eab-hmac-key-file (together): the NF's own external account binding\n"
            "        (e.g. from certforge acme eab add), used for its newAccount instead of acme.eab;\n"
            "        the key file (base64url, mode 0600 or refused) is read once, into the state\n"
            "        --star LIFETIME (60s..365d): STAR certificates (RFC 8739): the enrolment makes a STAR\n"
            "        order (acme.star_profile) with the NF's CSR; the agent fetches the next short-term\n"
            "        certificate from 40%% of the current one's life on (retried with backoff) and\n"
            "        answers the NF's /simplereenroll with the latest (its CSR must carry the order's\n"
            "        key: else 403 star_key)\n"
            "  nf import FILE  JSON lines {\"nf_instance_id\": ..., \"dns\": [...]} (and optionally\n"
            "        \"eab_kid\", \"eab_hmac_key_file\", \"star\"): one 'nf add' each; one JSON line per NF\n"
            "  nf remove UUID  cancel the NF's STAR order (RFC 8739 §3.1.2), then remove the NF from the\n"
            "        registry (its certificates are no longer renewed; the history stays)\n"
            "  nf show UUID    the NF, its enrolments and certificates (JSON)\n"
            "  nf list         one JSON line per NF with its latest enrolment's state\n"
            "\n"
            "FILES\n"
            "  the configuration (libconfig; docs/agent.md lists every setting), the state database\n"
            "  (state.path, made 0600 and refused when others may read it or another user owns it:\n"
            "  it holds the NFs' ACME account keys and EAB HMAC keys), tls.certificate/key,\n"
            "  cacerts, bootstrap.trust_anchors, bootstrap.token_trust_anchors,\n"
            "  dns_update.tsig.secret_file, acme.eab.hmac_key_file (the EAB HMAC key, base64url; mode\n"
            "  0600 or refused), status_file (counters, rewritten every second).\n"
            "\n"
            "EXIT STATUS\n"
            "  0 stopped by SIGTERM/SIGINT, or the command succeeded; 1 the configuration, start-up or\n"
            "  command failed (one line on stderr; config errors as FILE:LINE: PATH: PROBLEM); 2 usage\n"
            "  (e.g. --eab-kid without --eab-hmac-key-file).\n"
            "\n"
            "EXAMPLES\n"
            "  certforge-agent --config /etc/certforge/agent.conf --check\n"
            "  certforge-agent --config agent.conf nf add --nf-instance-id 6f1c2a6e-8c0e-4e0b-9a7e-2f1d3c4b5a69 \\\n"
            "      --dns amf1.5gc.mnc001.mcc001.3gppnetwork.org\n"
            "  certforge-agent --config /etc/certforge/agent.conf\n"
            "  curl --cacert root.pem --cert vendor.pem --key nf.key -H 'Content-Type: application/pkcs10' \\\n"
            "      --data-binary @nf.csr.b64 https://agent:8443/.well-known/est/simpleenroll\n"
            "\n"
            "See docs/agent.md.\n");
}

/* ------------------------------------------------------------ status view */

static void write_status(agent *a, acme_db *db, int64_t started)
{
    const agent_counters *c = &a->ctr;
    acme_store_stats st;
    acme_store_get_stats(a->store, &st);
    json_t *en = json_object();
    acme_q q;
    if (acme_db_query(db, &q, "SELECT status, transient, COUNT(*) FROM enrolments GROUP BY status, transient", "") == 0) {
        while (acme_q_next(&q) == 1) {
            char k[48];
            snprintf(k, sizeof(k), "%s%s", acme_q_text(&q, 0), acme_q_int(&q, 1) ? "_transient" : "");
            json_object_set_new(en, k, json_integer(acme_q_int(&q, 2)));
        }
        acme_q_end(&q);
    }
    json_int_t certs = 0, nfs = 0;
    if (acme_db_query(db, &q, "SELECT (SELECT COUNT(*) FROM certs), (SELECT COUNT(*) FROM nfs)", "") == 0) {
        if (acme_q_next(&q) == 1) {
            certs = acme_q_int(&q, 0);
            nfs = acme_q_int(&q, 1);
        }
        acme_q_end(&q);
    }
#define I(x) (json_int_t)(x)
    json_t *j = json_pack(
        "{s:s, s:I, s:I, s:I, s:s, s:I, s:I, s:o,"
        " s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I},"
        " s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I},"
        " s:{s:I, s:I, s:I}}",
        "version", CF_VERSION, "pid", I(getpid()), "started", I(started), "now", I(agent_now()), "directory",
        a->cfg->directory_url, "nfs", I(nfs), "certificates", I(certs), "enrolments", en, "est", "requests",
        I(c->requests), "cacerts", I(c->cacerts), "csrattrs", I(c->csrattrs), "simpleenroll", I(c->enroll), "simplereenroll", I(c->reenroll),
        "answered_certificate", I(c->issued_now), "accepted_202", I(c->accepted), "unavailable_503", I(c->unavailable),
        "refused_auth", I(c->refused_auth), "refused_csr", I(c->refused_csr), "refused_key_reuse", I(c->refused_key),
        "refused_token", I(c->refused_token), "refused_unknown_nf", I(c->refused_nf), "refused_address_limit", I(c->refused_address), "errors", I(c->errors), "acme",
        "in_flight", I(c->in_flight), "steps", I(c->steps), "requests", I(c->acme_requests), "network_errors",
        I(c->acme_errors), "retries", I(c->retries), "enrolled", I(c->enrolled), "renewed", I(c->renewed), "failed",
        I(c->failed), "dns_updates", I(c->dns_updates), "dns_errors", I(c->dns_errors), "ari_polls", I(c->ari_polls),
        "store", "commits", I(st.commits), "changes", I(st.changes), "max_group", I(st.max_group));
#undef I
    if (!j)
        return;
    /* through the safe writer (common/outfile.h); a status file is
     * rewritten often and is not worth an fsync each time */
    char *txt = json_dumps(j, JSON_COMPACT), err[600];
    if (txt && cf_write_file(a->cfg->status_file, txt, strlen(txt), 0644,
                             CF_OUT_NOSYNC | CF_OUT_NOSTDOUT, err, sizeof(err)) != 0)
        fprintf(stderr, "status file: %s\n", err);
    free(txt);
    json_decref(j);
}

/* ------------------------------------------------------------ nf commands */

/* acme.account_key_token: the token the NFs' account keys are made in. */
static int open_account_token(const agent_cfg *cfg, hsm_token **out, char *err, size_t errlen)
{
    hsm_err he = {0};
    *out = NULL;
    if (!cfg->account_key_token)
        return 0;
    if (hsm_token_open(cfg->account_key_token, NULL, out, &he) != 0) {
        snprintf(err, errlen, "acme.account_key_token: %s (%s)", he.msg, hsm_rv_name(he.rv));
        return -1;
    }
    return 0;
}

/* eab_kid and eab_file: the NF's own EAB credential (both or neither,
 * checked by the caller); the HMAC key is read here, once, into the state. */
/* --star: a duration ("1h", "600s"); the ACME server checks it against
 * its meta.auto-renewal min-lifetime at enrolment. */
static int star_lifetime(const char *v, int64_t *out)
{
    uint64_t secs = 0;
    char err[200];
    if (!v) {
        *out = 0;
        return 0;
    }
    if (cf_parse_duration(v, &secs, err, sizeof(err)) != 0 || secs < 60 || secs > 365 * 86400) {
        fprintf(stderr, "certforge-agent: --star '%s': a STAR certificate lifetime is a duration from 60s to 365d "
                        "(e.g. \"1h\")\n", v);
        return -1;
    }
    *out = (int64_t)secs;
    return 0;
}

static int nf_add_one(acme_store *s, hsm_token *tok, const char *id_in, const char *const *dns, unsigned n,
                      const char *eab_kid, const char *eab_file, const char *star, FILE *out)
{
    int64_t star_s = 0;
    char id[64], err[700], thumb[44], fp[120];
    uint8_t *ek = NULL;
    size_t ekl = 0;
    snprintf(id, sizeof(id), "%s", id_in);
    if (strlen(id) != 36 || !acme_uuid_ok(id)) {
        fprintf(stderr, "certforge-agent: '%s' is not an NF instance ID (a UUID)\n", id_in);
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        size_t l = strlen(dns[i]);
        if (l == 0 || l > 253 || strspn(dns[i], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") != l ||
            !strchr(dns[i], '.')) {
            fprintf(stderr, "certforge-agent: '%s' is not a DNS name\n", dns[i]);
            return -1;
        }
    }
    if (star_lifetime(star, &star_s) != 0)
        return -1;
    if (eab_kid && !agent_eab_kid_ok(eab_kid)) {
        fprintf(stderr, "certforge-agent: --eab-kid: %s\n", AGENT_EAB_KID_RULE);
        return -1;
    }
    if (eab_file && agent_eab_read_key(eab_file, &ek, &ekl, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforge-agent: --eab-hmac-key-file: %s\n", err);
        return -1;
    }
    int r = agent_nf_add(s, tok, id, dns, n, eab_kid, ek, ekl, star_s, thumb, err, sizeof(err));
    if (ek) {
        OPENSSL_cleanse(ek, ekl);
        free(ek);
    }
    if (r != 0 || agent_fingerprint(thumb, fp, sizeof(fp)) != 0) {
        fprintf(stderr, "certforge-agent: %s\n", err);
        return -1;
    }
    json_t *d = json_array();
    for (unsigned i = 0; i < n; i++)
        json_array_append_new(d, json_string(dns[i]));
    json_t *j = json_pack("{s:s, s:o, s:s, s:s, s:s?}", "nf_instance_id", id, "dns", d, "account_key_thumbprint", thumb,
                          "fingerprint", fp, "eab_kid", eab_kid);
    if (j && star_s)
        json_object_set_new(j, "star_lifetime", json_integer(star_s));
    char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (t)
        fprintf(out, "%s\n", t);
    free(t);
    json_decref(j);
    return 0;
}

static int cmd_nf(const agent_cfg *cfg, int argc, char **argv)
{
    if (argc < 1) {
        usage(stderr);
        return 2;
    }
    char err[512];
    acme_store *s = NULL;
    acme_db *db = NULL;
    hsm_token *tok = NULL;
    bool adds = strcmp(argv[0], "add") == 0 || strcmp(argv[0], "import") == 0 || strcmp(argv[0], "remove") == 0;
    if ((adds && open_account_token(cfg, &tok, err, sizeof(err)) != 0) || agent_state_open(cfg, &s, err, sizeof(err)) != 0 ||
        !(db = acme_db_open_reader(s, err, sizeof(err)))) {
        fprintf(stderr, "certforge-agent: %s\n", err);
        acme_store_close(s);
        hsm_token_close(tok);
        return 1;
    }
    int rc = 1;
    if (strcmp(argv[0], "add") == 0) {
        const char *id = NULL, *eab_kid = NULL, *eab_file = NULL, *star = NULL;
        const char *dns[64];
        unsigned n = 0;
        for (int i = 1; i < argc; i++) {
            if (strcmp(argv[i], "--nf-instance-id") == 0 && i + 1 < argc)
                id = argv[++i];
            else if (strcmp(argv[i], "--eab-kid") == 0 && i + 1 < argc)
                eab_kid = argv[++i];
            else if (strcmp(argv[i], "--eab-hmac-key-file") == 0 && i + 1 < argc)
                eab_file = argv[++i];
            else if (strcmp(argv[i], "--star") == 0 && i + 1 < argc)
                star = argv[++i];
            else if (strcmp(argv[i], "--dns") == 0 && i + 1 < argc && n < 64)
                dns[n++] = argv[++i];
            else {
                usage(stderr);
                rc = 2;
                goto out;
            }
        }
        if (!id) {
            usage(stderr);
            rc = 2;
            goto out;
        }
        if (!eab_kid != !eab_file) {
            fprintf(stderr, "certforge-agent: nf add: --eab-kid and --eab-hmac-key-file go together (the NF's EAB "
                            "key id and the file holding its HMAC key)\n");
            rc = 2;
            goto out;
        }
        rc = nf_add_one(s, tok, id, dns, n, eab_kid, eab_file, star, stdout) == 0 ? 0 : 1;
    } else if (strcmp(argv[0], "import") == 0 && argc == 2) {
        FILE *f = strcmp(argv[1], "-") == 0 ? stdin : fopen(argv[1], "r");
        if (!f) {
            fprintf(stderr, "certforge-agent: %s: %m\n", argv[1]);
            goto out;
        }
        char line[65536];
        unsigned ln = 0, bad = 0;
        while (fgets(line, sizeof(line), f)) {
            ln++;
            if (line[strspn(line, " \t\r\n")] == '\0')
                continue;
            json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, NULL);
            const char *id = json_string_value(json_object_get(j, "nf_instance_id"));
            const json_t *d = json_object_get(j, "dns");
            const json_t *jk = json_object_get(j, "eab_kid"), *jf = json_object_get(j, "eab_hmac_key_file");
            const char *eab_kid = json_string_value(jk), *eab_file = json_string_value(jf);
            const json_t *js = json_object_get(j, "star");
            const char *star = json_string_value(js);
            if (js && !star) {
                fprintf(stderr, "certforge-agent: %s:%u: \"star\" is a lifetime string (e.g. \"1h\")\n", argv[1], ln);
                bad++;
                json_decref(j);
                continue;
            }
            if ((jk && !eab_kid) || (jf && !eab_file) || !eab_kid != !eab_file) {
                fprintf(stderr,
                        "certforge-agent: %s:%u: \"eab_kid\" and \"eab_hmac_key_file\" go together, as strings\n",
                        argv[1], ln);
                bad++;
                json_decref(j);
                continue;
            }
            const char *dns[64];
            unsigned n = 0;
            for (size_t i = 0; i < json_array_size(d) && n < 64; i++)
                if (json_string_value(json_array_get(d, i)))
                    dns[n++] = json_string_value(json_array_get(d, i));
            if (!id || (d && !json_is_array(d)) || nf_add_one(s, tok, id, dns, n, eab_kid, eab_file, star, stdout) != 0) {
                fprintf(stderr,
                        "certforge-agent: %s:%u: not {\"nf_instance_id\": UUID, \"dns\": [NAMES], \"eab_kid\": KID, "
                        "\"eab_hmac_key_file\": FILE, \"star\": LIFETIME} (the eab pair and star optional)\n",
                        argv[1], ln);
                bad++;
            }
            json_decref(j);
        }
        if (f != stdin)
            fclose(f);
        rc = bad ? 1 : 0;
    } else if (strcmp(argv[0], "remove") == 0 && argc == 2) {
        /* the STAR order is canceled first: an NF whose order cannot be
         * canceled stays registered, so that `nf remove` can be run again */
        agent a = {.cfg = cfg, .store = s, .acct_token = tok, .log_level = cfg->log_level};
        agent_nf nf;
        int r = agent_nf_load(db, argv[1], false, &nf);
        if (r != 1) {
            fprintf(stderr, "certforge-agent: NF %s is not registered\n", argv[1]);
            goto out;
        }
        char order[sizeof(nf.star_order)];
        snprintf(order, sizeof(order), "%s", nf.star_order);
        agent_nf_clear(&nf);
        int c = agent_star_cancel(&a, db, argv[1], err, sizeof(err));
        if (c < 0 || (r = agent_nf_remove(s, argv[1], err, sizeof(err))) < 0) {
            fprintf(stderr, "certforge-agent: %s\n", err);
            goto out;
        }
        json_t *j = json_pack("{s:s, s:b, s:s?}", "nf_instance_id", argv[1], "removed", r == 1, "star_order_canceled",
                              c == 1 ? order : NULL);
        char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (t)
            printf("%s\n", t);
        free(t);
        json_decref(j);
        rc = 0;
    } else if (strcmp(argv[0], "show") == 0 && argc == 2) {
        agent_nf nf;
        int r = agent_nf_load(db, argv[1], false, &nf);
        if (r != 1) {
            fprintf(stderr, "certforge-agent: NF %s is not registered\n", argv[1]);
            goto out;
        }
        json_t *dn = json_array(), *en = json_array(), *ce = json_array();
        for (unsigned i = 0; i < nf.n_dns; i++)
            json_array_append_new(dn, json_string(nf.dns[i]));
        acme_q q;
        if (acme_db_query(db, &q,
                          "SELECT id, kind, status, attempts, error, transient, order_url, cert, created FROM enrolments "
                          "WHERE nf = ? ORDER BY created",
                          "s", argv[1]) == 0) {
            while (acme_q_next(&q) == 1)
                json_array_append_new(
                    en, json_pack("{s:s, s:s, s:s, s:I, s:s?, s:b, s:s?, s:s?, s:I}", "id", acme_q_text(&q, 0), "kind",
                                  acme_q_text(&q, 1), "status", acme_q_text(&q, 2), "attempts",
                                  (json_int_t)acme_q_int(&q, 3), "error", acme_q_text(&q, 4), "transient",
                                  (int)acme_q_int(&q, 5), "order", acme_q_text(&q, 6), "cert", acme_q_text(&q, 7),
                                  "created", (json_int_t)acme_q_int(&q, 8)));
            acme_q_end(&q);
        }
        if (acme_db_query(db, &q,
                          "SELECT id, spki, not_before, not_after, renew_at, ari_id, renewal FROM certs WHERE nf = ? "
                          "ORDER BY not_after",
                          "s", argv[1]) == 0) {
            while (acme_q_next(&q) == 1)
                json_array_append_new(ce, json_pack("{s:s, s:s, s:I, s:I, s:I, s:s?, s:s?}", "id", acme_q_text(&q, 0),
                                                    "spki_sha256", acme_q_text(&q, 1), "not_before",
                                                    (json_int_t)acme_q_int(&q, 2), "not_after",
                                                    (json_int_t)acme_q_int(&q, 3), "renew_at",
                                                    (json_int_t)acme_q_int(&q, 4), "ari_id", acme_q_text(&q, 5),
                                                    "renewal", acme_q_text(&q, 6)));
            acme_q_end(&q);
        }
        json_t *j = json_pack("{s:s, s:o, s:s, s:s, s:s?, s:o, s:o}", "nf_instance_id", nf.id, "dns", dn,
                              "account_key_thumbprint", nf.thumb, "account", nf.account_url, "eab_kid",
                              nf.eab_kid[0] ? nf.eab_kid : NULL, "enrolments", en, "certificates", ce);
        if (j && nf.star_lifetime > 0)
            json_object_set_new(j, "star", json_pack("{s:I, s:s?}", "lifetime", (json_int_t)nf.star_lifetime, "order",
                                                     nf.star_order[0] ? nf.star_order : NULL));
        agent_nf_clear(&nf);
        char *t = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
        if (t)
            printf("%s\n", t);
        free(t);
        json_decref(j);
        rc = 0;
    } else if (strcmp(argv[0], "list") == 0 && argc == 1) {
        acme_q q;
        if (acme_db_query(db, &q,
                          "SELECT n.id, n.dns, n.thumbprint, (SELECT status FROM enrolments e WHERE e.nf = n.id "
                          "ORDER BY created DESC LIMIT 1), (SELECT MAX(not_after) FROM certs c WHERE c.nf = n.id) "
                          "FROM nfs n ORDER BY n.id",
                          "") == 0) {
            while (acme_q_next(&q) == 1) {
                json_t *j = json_pack("{s:s, s:o, s:s, s:s?, s:I}", "nf_instance_id", acme_q_text(&q, 0), "dns",
                                      json_loads(acme_q_text(&q, 1), 0, NULL), "account_key_thumbprint",
                                      acme_q_text(&q, 2), "latest", acme_q_text(&q, 3), "not_after",
                                      (json_int_t)acme_q_int(&q, 4));
                char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
                if (t)
                    printf("%s\n", t);
                free(t);
                json_decref(j);
            }
            acme_q_end(&q);
            rc = 0;
        }
    } else {
        usage(stderr);
        rc = 2;
    }
out:
    acme_db_close(db);
    acme_store_close(s);
    hsm_token_close(tok);
    return rc;
}

/* ------------------------------------------------------------ main */

static X509_STORE *load_store(const char *file, char *err, size_t errlen)
{
    X509_STORE *st = X509_STORE_new();
    if (!st || X509_STORE_load_file(st, file) != 1) {
        snprintf(err, errlen, "%s: no PEM certificates to trust", file);
        X509_STORE_free(st);
        return NULL;
    }
    return st;
}

/* Once listening: give up what serving does not need (engine/confine,
 * docs/security.md). Writable: the SQLite state's folder and the status
 * file's; nothing else is written while running. */
static int confine(agent *a, char *err, size_t errlen)
{
    const agent_cfg *cfg = a->cfg;
    if (!cfg->confine) {
        agent_log(a, AGENT_LOG_WARNING, "event=unconfined reason=\"confine.enabled = false\"");
        return 0;
    }
    char p[4200], q[4200];
    const char *w[2];
    size_t n = 0;
    if (cfg->db_path)
        w[n++] = confine_folder_of(cfg->db_path, p, sizeof(p));
    if (cfg->status_file)
        w[n++] = confine_folder_of(cfg->status_file, q, sizeof(q));
    confine_result r;
    if (confine_apply(w, n, cfg->confine_require_landlock, cfg->confine_user, &r, err, errlen) != 0)
        return -1;
    char d[3000];
    confine_describe(&r, w, n, d, sizeof(d));
    agent_log(a, r.landlock_abi ? AGENT_LOG_INFO : AGENT_LOG_WARNING, "event=confined %s", d);
    if (r.root)
        agent_log(a, AGENT_LOG_WARNING,
                  "event=running_as_root effect=\"uid 0 without capabilities; set confine.user\"");
    return 0;
}

int main(int argc, char **argv)
{
    const char *cfg_file = NULL;
    int check = 0;
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check", no_argument, NULL, 'k'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            cfg_file = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'V':
            printf("certforge-agent %s\n", CF_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!cfg_file) {
        usage(stderr);
        return 2;
    }
    char err[1024] = "";
    agent_cfg *cfg = NULL;
    if (agent_cfg_load(cfg_file, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforge-agent: %s\n", err);
        return 1;
    }
    if (optind < argc) {
        int rc = 2;
        if (strcmp(argv[optind], "nf") == 0 && !check)
            rc = cmd_nf(cfg, argc - optind - 1, argv + optind + 1);
        else
            usage(stderr);
        agent_cfg_free(cfg);
        return rc;
    }
    int rc = 1;
    agent a = {.cfg = cfg, .log_level = cfg->log_level};
    acme_db *mdb = NULL;
    /* the files the config names, so that --check reports them too */
    if (acme_anchors_load(cfg->cacerts_file, &a.cacerts, err, sizeof(err)) != 0 ||
        (cfg->bootstrap_anchors && !(a.bootstrap = load_store(cfg->bootstrap_anchors, err, sizeof(err)))) ||
        (cfg->token_anchors &&
         acme_tkauth_new(cfg->token_anchors, cfg->token_max_lifetime_s, NULL, 0, &a.tkauth, err, sizeof(err)) != 0) ||
        open_account_token(cfg, &a.acct_token, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforge-agent: %s\n", err);
        goto out;
    }
    if (check) {
        printf("%s: OK\n", cfg_file);
        rc = 0;
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (agent_state_open(cfg, &a.store, err, sizeof(err)) != 0 || !(mdb = acme_db_open_reader(a.store, err, sizeof(err))) ||
        agent_est_new(&a, &a.est, err, sizeof(err)) != 0 || agent_sched_start(&a, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforge-agent: %s\n", err);
        goto stop;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int resumed = agent_resume(&a, mdb);
    if (agent_est_start(a.est, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforge-agent: %s\n", err);
        goto stop;
    }
    if (confine(&a, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforge-agent: %s: confine: %s\n", cfg_file, err);
        goto stop;
    }
    agent_log(&a, AGENT_LOG_INFO,
              "event=started version=%s pid=%ld listen=%s:%u threads=%u workers=%u directory=%s state=%s resumed=%d "
              "bootstrap_certificates=%s tokens=%s",
              CF_VERSION, (long)getpid(), cfg->listen_host, cfg->listen_port, cfg->threads, cfg->workers,
              cfg->directory_url, cfg->db_path ? cfg->db_path : "postgresql", resumed, a.bootstrap ? "yes" : "no",
              a.tkauth ? "yes" : "no");
    (void)sd_notify(0, "READY=1\nSTATUS=serving"); /* systemd Type=notify; nothing without NOTIFY_SOCKET */
    int64_t started = agent_now(), next_status = 0, next_scan = 0;
    while (!stop_sig) {
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
        int64_t now = agent_now();
        if (now >= next_scan) {
            agent_renewal_scan(&a, mdb);
            next_scan = now + cfg->renewal_scan_s;
        }
        if (now >= next_status) {
            write_status(&a, mdb, started);
            next_status = now + 1;
        }
    }
    agent_log(&a, AGENT_LOG_INFO, "event=stopping signal=%d", (int)stop_sig);
    (void)sd_notify(0, "STOPPING=1\nSTATUS=stopping");
    rc = 0;
stop:
    /* The loops stop taking requests, the workers end their steps, the
     * store commits what is queued; then what the loops still have posted
     * runs (answering no one) and everything is freed. */
    agent_est_stop(a.est);
    agent_sched_stop(a.sched);
    if (a.store) {
        acme_db_close(mdb);
        mdb = NULL;
        acme_store_stats st;
        acme_store_get_stats(a.store, &st);
        acme_store_close(a.store);
        a.store = NULL;
        if (rc == 0)
            agent_log(&a, AGENT_LOG_INFO,
                      "event=stopped requests=%llu enrolled=%llu renewed=%llu failed=%llu commits=%llu changes=%llu",
                      (unsigned long long)a.ctr.requests, (unsigned long long)a.ctr.enrolled,
                      (unsigned long long)a.ctr.renewed, (unsigned long long)a.ctr.failed,
                      (unsigned long long)st.commits, (unsigned long long)st.changes);
    }
    agent_est_free(a.est);
    agent_sched_free(a.sched);
    curl_global_cleanup();
out:
    acme_db_close(mdb);
    acme_tkauth_free(a.tkauth);
    hsm_token_close(a.acct_token);
    X509_STORE_free(a.bootstrap);
    acme_anchors_free(a.cacerts);
    agent_cfg_free(cfg);
    return rc;
}
