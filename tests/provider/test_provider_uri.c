/* The provider's URI parser (client/provider/uri.h): what it accepts, and
 * every way it refuses, with its message. */
#include "client/provider/uri.h"

#include "cf_test.h"
#include <stdlib.h>
#include <string.h>

static void accepts(const char *uri, const char *key, const char *socket)
{
    cfp_uri u;
    char err[256] = "";
    int r = cfp_uri_parse(uri, &u, err, sizeof(err));
    CU_ASSERT_EQUAL(r, 0);
    if (r != 0) {
        fprintf(stderr, "\n  %s: %s\n", uri, err);
        return;
    }
    CU_ASSERT_STRING_EQUAL(u.key, key);
    CU_ASSERT_STRING_EQUAL(u.socket, socket);
}

static void refuses(const char *uri, const char *needle)
{
    cfp_uri u;
    char err[256] = "";
    CU_ASSERT_EQUAL(cfp_uri_parse(uri, &u, err, sizeof(err)), -1);
    if (!strstr(err, needle)) {
        fprintf(stderr, "\n  %s: '%s' lacks '%s'\n", uri ? uri : "(null)", err, needle);
        CU_FAIL("message");
    }
}

static void test_accepts(void)
{
    accepts("certforge:key=p256", "p256", "");
    accepts("certforge:key=nf-ca.1_X", "nf-ca.1_X", "");
    accepts("certforge:key=p256;socket=/run/cf.sock", "p256", "/run/cf.sock");
    accepts("certforge:socket=/run/cf.sock;key=p256", "p256", "/run/cf.sock");
    accepts("CertForge:key=a", "a", "");
    accepts("certforge:key=a;socket=/tmp/x%3By.sock", "a", "/tmp/x;y.sock");
    accepts("certforge:key=%61b", "ab", "");
    accepts("certforge:key=a;socket=relative.sock", "a", "relative.sock");
    char k64[100], s107[200];
    snprintf(k64, sizeof(k64), "certforge:key=%064d", 0);
    accepts(k64, k64 + 14, "");
    char path[108];
    memset(path, 's', 107);
    path[0] = '/';
    path[107] = 0;
    snprintf(s107, sizeof(s107), "certforge:key=a;socket=%s", path);
    accepts(s107, "a", path);
}

static void test_refuses(void)
{
    refuses(NULL, "no URI");
    refuses("", "not a certforge URI");
    refuses("pkcs11:object=x", "not a certforge URI");
    refuses("certforge", "not a certforge URI");
    refuses("certforgex:key=a", "not a certforge URI");
    refuses("certforge:", "no attributes");
    refuses("certforge:key", "has no '=VALUE'");
    refuses("certforge:key=", "attribute 'key' is empty");
    refuses("certforge:key=a;socket=", "attribute 'socket' is empty");
    refuses("certforge:key=a;key=b", "attribute 'key' given twice");
    refuses("certforge:key=a;socket=/x;socket=/y", "attribute 'socket' given twice");
    refuses("certforge:key=a;colour=blue", "unknown attribute 'colour' (known: key, socket)");
    refuses("certforge:Key=a", "unknown attribute 'Key'");
    refuses("certforge:key=a;", "empty attribute (stray ';')");
    refuses("certforge:;key=a", "empty attribute");
    refuses("certforge:key=a;;socket=/x", "empty attribute");
    refuses("certforge:socket=/x", "attribute 'key' is required");
    refuses("certforge:key=a/b", "'/' is not allowed in a key name");
    refuses("certforge:key=a b", "' ' is not allowed in a key name");
    refuses("certforge:key=a%zz", "bad %-escape");
    refuses("certforge:key=a%4", "bad %-escape");
    refuses("certforge:key=a%", "bad %-escape");
    refuses("certforge:key=a%00", "control character or NUL");
    refuses("certforge:key=a;socket=/x%0Ay", "control character or NUL");
    refuses("certforge:key=a;socket=/x\ty", "control character or NUL");
    refuses("certforge://key=a", "unknown attribute '//key'");
    char k65[100];
    snprintf(k65, sizeof(k65), "certforge:key=%065d", 0);
    refuses(k65, "attribute 'key': value longer than 64 octets");
    char s108[200];
    snprintf(s108, sizeof(s108), "certforge:key=a;socket=/%0107d", 0);
    refuses(s108, "attribute 'socket': value longer than 107 octets");
    char *huge = malloc(CFP_URI_MAX + 100);
    CU_ASSERT_PTR_NOT_NULL_FATAL(huge);
    memset(huge, 'a', CFP_URI_MAX + 99);
    memcpy(huge, "certforge:key=", 14);
    huge[CFP_URI_MAX + 99] = 0;
    refuses(huge, "URI longer than 1024 octets");
    free(huge);
}

static void test_socket_default(void)
{
    cfp_uri u;
    char err[256], buf[CFP_SOCKET_MAX + 1];
    CU_ASSERT_EQUAL_FATAL(cfp_uri_parse("certforge:key=a", &u, err, sizeof(err)), 0);
    unsetenv("CERTFORGE_SOCKET");
    CU_ASSERT_EQUAL(cfp_uri_socket(&u, buf, sizeof(buf), err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(buf, "/run/certforge/certforged.sock");
    setenv("CERTFORGE_SOCKET", "", 1);
    CU_ASSERT_EQUAL(cfp_uri_socket(&u, buf, sizeof(buf), err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(buf, "/run/certforge/certforged.sock");
    setenv("CERTFORGE_SOCKET", "/env/cf.sock", 1);
    CU_ASSERT_EQUAL(cfp_uri_socket(&u, buf, sizeof(buf), err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(buf, "/env/cf.sock");
    CU_ASSERT_EQUAL_FATAL(cfp_uri_parse("certforge:key=a;socket=/uri.sock", &u, err, sizeof(err)),
                          0);
    CU_ASSERT_EQUAL(cfp_uri_socket(&u, buf, sizeof(buf), err, sizeof(err)), 0);
    CU_ASSERT_STRING_EQUAL(buf, "/uri.sock");
    char longp[300];
    memset(longp, 'p', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = 0;
    setenv("CERTFORGE_SOCKET", longp, 1);
    CU_ASSERT_EQUAL_FATAL(cfp_uri_parse("certforge:key=a", &u, err, sizeof(err)), 0);
    CU_ASSERT_EQUAL(cfp_uri_socket(&u, buf, sizeof(buf), err, sizeof(err)), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "socket path longer than 107 octets"));
    unsetenv("CERTFORGE_SOCKET");
}

int main(int argc, char **argv)
{
    static const cf_test tests[] = {
        {"accepts", test_accepts},
        {"refuses, with a message", test_refuses},
        {"socket: URI, then CERTFORGE_SOCKET, then the default", test_socket_default},
    };
    static const cf_suite suites[] = {CF_SUITE("provider_uri", NULL, NULL, tests)};
    return CF_TEST_MAIN(argc, argv, suites);
}
