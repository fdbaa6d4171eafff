/* certforge csr-gen — a test and demo helper: N NF CSRs, each with its own
 * new key, NF instance ID and FQDN (bench/csr_pool.c, the generator
 * certforge-bench uses), and the JSON-lines batch that `certforge issue
 * --batch` reads. Not an operator tool: real CSRs come from the NFs. */
#include "bench/csr_pool.h"
#include "common/outfile.h"
#include "tools/certforge/cli.h"
#include "tools/certforge/cli_daemon.h"
#include "tools/certforge/commands.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/pem.h>

static const char csrgen_help[] =
    "usage: certforge csr-gen --count N --out-dir DIR --batch-out FILE [OPTIONS]\n"
    "\n"
    "Test and demo helper. Generates N PKCS#10 CSRs as an NF would send them (a new\n"
    "key each, subject C=FI, O=5gc.mnc001.mcc001.3gppnetwork.org, SAN with a random\n"
    "NF instance ID URI and an amf-*.5gc.mnc001.mcc001.3gppnetwork.org DNS name),\n"
    "writes them to DIR as nf-NNNNNN.csr.pem, and writes FILE: one JSON line per CSR\n"
    "for 'certforge issue --batch' (csr as an absolute path, or the PEM text with\n"
    "--inline; profile; nf_instance_id; dns; nf_types; out nf-NNNNNN.pem).\n"
    "\n"
    "OPTIONS\n"
    "  --count N         CSRs to make (1-1000000)\n"
    "  --out-dir DIR     folder for the CSR files (created)\n"
    "  --batch-out FILE  the JSON-lines batch\n"
    "  --type TYPE       key type, as for 'keys generate': ec-p256 (default),\n"
    "                    ec-p384, rsa-2048, rsa-3072, ed25519 (--key TYPE, the old\n"
    "                    spelling, is still taken for one release, with a note)\n"
    "  --profile NAME    profile written into each line (default nf)\n"
    "  --nf-type TYPE    NFType written into each line (default AMF)\n"
    "  --inline          put the PEM text into the batch instead of a path\n"
    "  --force           replace an existing batch FILE and CSR files (without it\n"
    "                    they are refused before any key is made)\n"
    "  --help            this text\n"
    "\n"
    "EXAMPLES\n"
    "  certforge csr-gen --count 2000 --out-dir csrs --batch-out batch.jsonl\n"
    "  certforge issue --batch batch.jsonl --out-dir certs\n"
    "\n"
    "EXIT STATUS\n"
    "  0 written; 1 generation or a file failed; 2 usage error\n";

enum {
    OPT_COUNT = 256,
    OPT_OUTDIR,
    OPT_BATCHOUT,
    OPT_KEY,
    OPT_TYPE,
    OPT_PROFILE,
    OPT_NFTYPE,
    OPT_INLINE,
    OPT_FORCE,
    OPT_HELP
};

static char *pem_of(const uint8_t *der, size_t len)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *s = NULL, *p = NULL;
    if (b && PEM_write_bio(b, "CERTIFICATE REQUEST", "", der, (long)len) > 0) {
        long n = BIO_get_mem_data(b, &p);
        if (n > 0 && (s = malloc((size_t)n + 1))) {
            memcpy(s, p, (size_t)n);
            s[n] = 0;
        }
    }
    BIO_free(b);
    return s;
}

int cmd_csrgen(int argc, char **argv)
{
    static const struct option lo[] = {{"count", required_argument, NULL, OPT_COUNT},
                                       {"out-dir", required_argument, NULL, OPT_OUTDIR},
                                       {"batch-out", required_argument, NULL, OPT_BATCHOUT},
                                       {"type", required_argument, NULL, OPT_TYPE},
                                       {"key", required_argument, NULL, OPT_KEY},
                                       {"profile", required_argument, NULL, OPT_PROFILE},
                                       {"nf-type", required_argument, NULL, OPT_NFTYPE},
                                       {"inline", no_argument, NULL, OPT_INLINE},
                                       {"force", no_argument, NULL, OPT_FORCE},
                                       {"help", no_argument, NULL, OPT_HELP},
                                       {0, 0, 0, 0}};
    unsigned long count = 0;
    const char *dir = NULL, *batch = NULL, *key = "ec-p256", *profile = "nf", *nftype = "AMF";
    bool inl = false, force = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case OPT_COUNT:
            if (!cli_parse_uint(optarg, 1, 1000000, &count))
                return cli_usage("csr-gen: --count must be 1-1000000, not '%s'", optarg);
            break;
        case OPT_OUTDIR:
            dir = optarg;
            break;
        case OPT_BATCHOUT:
            batch = optarg;
            break;
        case OPT_KEY:
            cli_note("csr-gen --key is deprecated, use --type");
            /* fall through */
        case OPT_TYPE:
            key = optarg;
            break;
        case OPT_PROFILE:
            profile = optarg;
            break;
        case OPT_NFTYPE:
            nftype = optarg;
            break;
        case OPT_INLINE:
            inl = true;
            break;
        case OPT_FORCE:
            force = true;
            break;
        case OPT_HELP:
            fputs(csrgen_help, stdout);
            return CLI_OK;
        default:
            return cli_bad_option("csr-gen", argc, argv);
        }
    }
    if (optind < argc)
        return cli_usage("csr-gen: unexpected argument '%s'", argv[optind]);
    if (!count || !dir || !batch)
        return cli_usage("csr-gen: --count, --out-dir and --batch-out are required; see "
                         "'certforge csr-gen --help'");
    static const char *const types[] = {"ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "ed25519"};
    bool known = false;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        known = known || strcmp(key, types[i]) == 0;
    if (!known)
        return cli_usage("csr-gen: --type must be ec-p256, ec-p384, rsa-2048, rsa-3072 or "
                         "ed25519, not '%s'",
                         key);

    int rc = CLI_FAIL;
    csr_pool pool;
    memset(&pool, 0, sizeof(pool));
    cf_outfile bo = {.fd = -1, .dirfd = -1};
    FILE *bf = NULL;
    char absdir[PATH_MAX], path[PATH_MAX + 32], err[PATH_MAX + 300];
    if (cli_mkdir_p(dir) != 0) {
        rc = cli_fail("csr-gen: cannot create %s: %s", dir, strerror(errno));
        goto out;
    }
    if (!realpath(dir, absdir)) {
        rc = cli_fail("csr-gen: %s: %s", dir, strerror(errno));
        goto out;
    }
    /* existing files are refused before any key is made */
    if ((rc = cli_out_check("csr-gen", "--batch-out", batch, force, CF_OUT_NOSTDOUT)) != CLI_OK)
        goto out;
    rc = CLI_FAIL;
    for (unsigned long i = 0; i < count; i++) {
        snprintf(path, sizeof(path), "%s/nf-%06lu.csr.pem", absdir, i + 1);
        if (cli_out_exists(path, force, err, sizeof(err))) {
            rc = cli_fail("%s", err);
            goto out;
        }
    }
    if (csr_pool_get(&pool, key, count, NULL) != 0) {
        rc = cli_fail("csr-gen: CSR generation failed");
        goto out;
    }
    if (cf_outfile_open(&bo, batch, 0644, cli_out_flags(force, CF_OUT_NOSTDOUT), err,
                        sizeof(err)) != 0) {
        rc = cli_out_fail("csr-gen", batch, err);
        goto out;
    }
    bf = bo.f;
    for (size_t i = 0; i < pool.n; i++) {
        const csr_item *it = &pool.items[i];
        char *pem = pem_of(it->der, it->len);
        if (!pem) {
            rc = cli_fail("csr-gen: PEM encoding failed");
            goto out;
        }
        snprintf(path, sizeof(path), "%s/nf-%06zu.csr.pem", absdir, i + 1);
        /* synced once for all below */
        if (cf_write_file(path, pem, strlen(pem), 0644,
                          cli_out_flags(force, CF_OUT_NOSYNC | CF_OUT_NOSTDOUT), err,
                          sizeof(err)) != 0) {
            free(pem);
            rc = cli_out_fail("csr-gen", path, err);
            goto out;
        }
        char out[64];
        snprintf(out, sizeof(out), "nf-%06zu.pem", i + 1);
        json_t *line = json_pack("{s:s, s:s, s:s, s:[s], s:[s], s:s}", "csr", inl ? pem : path,
                                 "profile", profile, "nf_instance_id", it->uuid, "dns", it->fqdn,
                                 "nf_types", nftype, "out", out);
        free(pem);
        if (!line || json_dumpf(line, bf, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0 ||
            fputc('\n', bf) == EOF) {
            json_decref(line);
            rc = cli_fail("csr-gen: cannot write %s: %s", batch, strerror(errno));
            goto out;
        }
        json_decref(line);
    }
    int dfd = open(absdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool synced = dfd >= 0 && syncfs(dfd) == 0;
    if (dfd >= 0)
        close(dfd);
    if (!synced) {
        rc = cli_fail("csr-gen: cannot sync %s to disk: %s", absdir, strerror(errno));
        goto out;
    }
    bf = NULL;
    if (cf_outfile_commit(&bo, err, sizeof(err)) != 0) {
        rc = cli_out_fail("csr-gen", batch, err);
        goto out;
    }
    printf("%zu %s CSRs in %s, batch %s\n", pool.n, key, absdir, batch);
    rc = CLI_OK;
out:
    if (bf)
        cf_outfile_abort(&bo);
    csr_pool_free(&pool);
    return rc;
}
