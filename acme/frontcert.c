/* frontcert.c — see frontcert.h. */
#include "acme/frontcert.h"
#include "common/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void paths(const acme_cfg *cfg, acme_frontcert *fc)
{
    snprintf(fc->key_path, sizeof(fc->key_path), "%s/acme-tls.key", cfg->tls_state_dir);
    snprintf(fc->chain_path, sizeof(fc->chain_path), "%s/acme-tls.pem", cfg->tls_state_dir);
}

static int read_validity(const char *chain, acme_frontcert *fc, const acme_cfg *cfg)
{
    FILE *f = fopen(chain, "r");
    if (!f)
        return -1;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x)
        return -1;
    struct tm tm;
    int rc = -1;
    if (ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm) == 1) {
        fc->not_before = (int64_t)timegm(&tm);
        if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1) {
            fc->not_after = (int64_t)timegm(&tm);
            fc->renew_at = fc->not_before + (int64_t)((double)(fc->not_after - fc->not_before) * cfg->tls_renew_fraction);
            rc = 0;
        }
    }
    X509_free(x);
    return rc;
}

/* Write data to path atomically (common/outfile.h): no fchmod, so it also
 * works under the seccomp filter that denies mode changes. */
static int write_atomic(const char *path, const void *data, size_t len, mode_t mode, char *err, size_t errlen)
{
    return cf_write_file(path, data, len, mode, CF_OUT_NOSTDOUT, err, errlen);
}

int acme_frontcert_issue(const acme_cfg *cfg, acme_issuer *is, acme_frontcert *fc, SSL_CTX **ctx, char *err,
                         size_t errlen)
{
    int rc = -1;
    EVP_PKEY *key = NULL;
    X509_REQ *req = NULL;
    unsigned char *csr = NULL;
    BIO *kb = NULL, *cb = NULL;
    acme_job j = {0};
    paths(cfg, fc);
    if (mkdir(cfg->tls_state_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "tls.state_dir %s: %s", cfg->tls_state_dir, strerror(errno));
        return -1;
    }
    key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    req = X509_REQ_new();
    if (!key || !req || X509_REQ_set_pubkey(req, key) != 1) {
        snprintf(err, errlen, "cannot make the front end's key");
        goto out;
    }
    X509_NAME *nm = X509_REQ_get_subject_name(req);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cfg->tls_dns[0], -1, -1, 0);
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    for (unsigned i = 0; gens && i < cfg->n_tls_dns; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (!g || !s || ASN1_STRING_set(s, cfg->tls_dns[i], -1) != 1) {
            GENERAL_NAME_free(g);
            ASN1_IA5STRING_free(s);
            continue;
        }
        GENERAL_NAME_set0_value(g, GEN_DNS, s);
        sk_GENERAL_NAME_push(gens, g);
    }
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *san = gens ? X509V3_EXT_i2d(NID_subject_alt_name, 0, gens) : NULL;
    GENERAL_NAMES_free(gens);
    if (!exts || !san || !sk_X509_EXTENSION_push(exts, san) || X509_REQ_add_extensions(req, exts) != 1 ||
        X509_REQ_sign(req, key, EVP_sha256()) <= 0) {
        X509_EXTENSION_free(san);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
        snprintf(err, errlen, "cannot make the front end's CSR");
        goto out;
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    int cl = i2d_X509_REQ(req, &csr);
    if (cl <= 0) {
        snprintf(err, errlen, "cannot encode the front end's CSR");
        goto out;
    }
    j.kind = ACME_JOB_ISSUE;
    j.req.profile = (cf_str){cfg->tls_profile, strlen(cfg->tls_profile)};
    j.req.csr_der = csr;
    j.req.csr_len = (size_t)cl;
    for (unsigned i = 0; i < cfg->n_tls_dns; i++)
        j.req.fqdns[j.req.n_fqdns++] = (cf_str){cfg->tls_dns[i], strlen(cfg->tls_dns[i])};
    j.req.requester = (cf_str){"certforge-acme:tls", 18};
    if (acme_issuer_run(is, &j) != 0 || j.status != CF_ST_OK) {
        snprintf(err, errlen, "certforged did not issue the front end's certificate (profile %s): %s%s%s", cfg->tls_profile,
                 cf_status_name(j.status), j.message[0] ? ": " : "", j.message);
        goto out;
    }
    /* key, then chain: a crash in between leaves a key whose chain does not
     * match, which the next start notices and re-issues */
    kb = BIO_new(BIO_s_mem());
    cb = BIO_new(BIO_s_mem());
    if (!kb || !cb || PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL) != 1) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    const unsigned char *p = j.cert;
    X509 *leaf = d2i_X509(NULL, &p, (long)j.cert_len);
    int okc = leaf && PEM_write_bio_X509(cb, leaf) == 1;
    X509_free(leaf);
    for (unsigned i = 0; okc && i < j.n_chain; i++) {
        p = j.chain[i];
        X509 *x = d2i_X509(NULL, &p, (long)j.chain_len[i]);
        okc = x && PEM_write_bio_X509(cb, x) == 1;
        X509_free(x);
    }
    if (!okc) {
        snprintf(err, errlen, "certforged's answer holds an unreadable certificate");
        goto out;
    }
    char *kd, *cd;
    long kl = BIO_get_mem_data(kb, &kd), cdl = BIO_get_mem_data(cb, &cd);
    if (write_atomic(fc->key_path, kd, (size_t)kl, 0600, err, errlen) != 0 ||
        write_atomic(fc->chain_path, cd, (size_t)cdl, 0644, err, errlen) != 0)
        goto out;
    if (read_validity(fc->chain_path, fc, cfg) != 0) {
        snprintf(err, errlen, "%s: unreadable after writing", fc->chain_path);
        goto out;
    }
    *ctx = acme_server_ssl_ctx(fc->chain_path, fc->key_path, err, errlen);
    rc = *ctx ? 0 : -1;
out:
    acme_job_clear(&j);
    BIO_free(kb);
    BIO_free(cb);
    OPENSSL_free(csr);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}

int acme_frontcert_load_or_issue(const acme_cfg *cfg, acme_issuer *is, acme_frontcert *fc, SSL_CTX **ctx, char *err,
                                 size_t errlen)
{
    paths(cfg, fc);
    if (read_validity(fc->chain_path, fc, cfg) == 0 && acme_now() < fc->renew_at) {
        char e2[256];
        *ctx = acme_server_ssl_ctx(fc->chain_path, fc->key_path, e2, sizeof(e2));
        if (*ctx)
            return 0;
    }
    return acme_frontcert_issue(cfg, is, fc, ctx, err, errlen);
}
