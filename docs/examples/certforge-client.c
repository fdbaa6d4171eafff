/* certforge-client.c — a program outside the certforge tree using the
 * installed libcertforge (pkg-config certforge):
 *
 *   cc -o certforge-client certforge-client.c $(pkg-config --cflags --libs certforge)
 *   ./certforge-client /run/certforge/certforged.sock                 # STATUS
 *   ./certforge-client SOCKET amf.csr.der nf amf.example amf.der      # ISSUE
 *
 * With a socket only, it prints certforged's counters (STATUS). With a CSR
 * (DER), a profile and a DNS name it asks for a certificate and writes its
 * DER to OUT. Exit status 0 when certforged answered OK, 1 otherwise. */
#include <certforge.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int status(cf_client *c)
{
    cf_response r;
    if (cf_client_status(c, 5000, &r) != 0) {
        fprintf(stderr, "certforge-client: STATUS: %s\n", cf_client_error(c));
        return 1;
    }
    if (r.status != CF_ST_OK) {
        fprintf(stderr, "certforge-client: STATUS answered %s\n", cf_status_name(r.status));
        return 1;
    }
    for (unsigned i = 0; i < r.n_kv; i++)
        printf("%.*s=%.*s\n", (int)r.kv[i].key.len, r.kv[i].key.p, (int)r.kv[i].value.len,
               r.kv[i].value.p);
    return 0;
}

static int issue(cf_client *c, const char *csr_path, const char *profile, const char *dns,
                 const char *out)
{
    static unsigned char csr[65536];
    FILE *f = fopen(csr_path, "rb");
    if (!f) {
        perror(csr_path);
        return 1;
    }
    size_t n = fread(csr, 1, sizeof(csr), f);
    fclose(f);
    cf_issue_req req;
    memset(&req, 0, sizeof(req));
    req.profile = (cf_str){profile, strlen(profile)};
    req.csr_der = csr;
    req.csr_len = n;
    req.fqdns[0] = (cf_str){dns, strlen(dns)};
    req.n_fqdns = 1;
    cf_response r;
    if (cf_issue_one(c, &req, 10000, &r) != 0) {
        fprintf(stderr, "certforge-client: ISSUE: %s\n", cf_client_error(c));
        return 1;
    }
    if (r.status != CF_ST_OK) {
        fprintf(stderr, "certforge-client: %s: %.*s\n", cf_status_name(r.status),
                (int)r.message.len, r.message.p);
        return 1;
    }
    f = fopen(out, "wb");
    if (!f || fwrite(r.cert.p, 1, r.cert.len, f) != r.cert.len || fclose(f) != 0) {
        perror(out);
        return 1;
    }
    printf("issued: %zu octets, serial ", r.cert.len);
    for (size_t i = 0; i < r.serial.len; i++)
        printf("%02x", r.serial.p[i]);
    printf(", chain of %u\n", r.n_chain);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 6) {
        fprintf(stderr, "usage: certforge-client SOCKET [CSR.der PROFILE DNS OUT.der]\n");
        return 2;
    }
    cf_client *c = NULL;
    char err[256];
    if (cf_client_connect(argv[1], &c, err, sizeof(err)) != 0) {
        fprintf(stderr, "certforge-client: %s\n", err);
        return 1;
    }
    int rc = argc == 2 ? status(c) : issue(c, argv[2], argv[3], argv[4], argv[5]);
    cf_client_close(c);
    return rc;
}
