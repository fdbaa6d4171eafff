/* common/addrcount: connections per client address. The cap holds per
 * address and not across addresses, a release frees a slot, the last
 * release forgets the address, 0 means no cap, and many threads taking and
 * releasing at once leave every count at zero (run under TSan too). */
#include "common/addrcount.h"

#include "cf_test.h"
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static void test_cap_per_address(void)
{
    cf_addrcount *c = cf_addrcount_new(2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    unsigned held = 0;
    cf_addr_slot *a1 = cf_addrcount_take(c, "192.0.2.1", &held);
    CU_ASSERT_PTR_NOT_NULL(a1);
    CU_ASSERT_EQUAL(held, 1);
    cf_addr_slot *a2 = cf_addrcount_take(c, "192.0.2.1", &held);
    CU_ASSERT_PTR_NOT_NULL(a2);
    CU_ASSERT_EQUAL(held, 2);
    CU_ASSERT_PTR_NULL(cf_addrcount_take(c, "192.0.2.1", &held)); /* over the cap */
    CU_ASSERT_EQUAL(held, 2);
    cf_addr_slot *b = cf_addrcount_take(c, "2001:db8::1", &held); /* another address */
    CU_ASSERT_PTR_NOT_NULL(b);
    CU_ASSERT_EQUAL(held, 1);
    CU_ASSERT_EQUAL(cf_addrcount_addresses(c), 2);
    cf_addrcount_release(a1);
    cf_addr_slot *a3 = cf_addrcount_take(c, "192.0.2.1", &held); /* a slot freed */
    CU_ASSERT_PTR_NOT_NULL(a3);
    CU_ASSERT_EQUAL(held, 2);
    cf_addrcount_release(a2);
    cf_addrcount_release(a3);
    cf_addrcount_release(b);
    CU_ASSERT_EQUAL(cf_addrcount_addresses(c), 0); /* nothing kept for idle addresses */
    cf_addrcount_release(NULL);
    cf_addrcount_free(c);
}

static void test_unlimited_and_long_names(void)
{
    cf_addrcount *c = cf_addrcount_new(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cf_addr_slot *s[100];
    unsigned held = 0;
    for (int i = 0; i < 100; i++) {
        s[i] = cf_addrcount_take(c, "198.51.100.7", &held);
        CU_ASSERT_PTR_NOT_NULL(s[i]);
    }
    CU_ASSERT_EQUAL(held, 100);
    /* a name longer than any address is cut, not overrun; NULL is "" */
    char longname[300];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    cf_addr_slot *l = cf_addrcount_take(c, longname, &held);
    cf_addr_slot *n = cf_addrcount_take(c, NULL, &held);
    CU_ASSERT_PTR_NOT_NULL(l);
    CU_ASSERT_PTR_NOT_NULL(n);
    CU_ASSERT_EQUAL(cf_addrcount_addresses(c), 3);
    for (int i = 0; i < 100; i++)
        cf_addrcount_release(s[i]);
    cf_addrcount_release(l);
    cf_addrcount_release(n);
    CU_ASSERT_EQUAL(cf_addrcount_addresses(c), 0);
    cf_addrcount_free(c);
}

/* freed with slots still taken: no leak (ASan) */
static void test_free_with_slots(void)
{
    cf_addrcount *c = cf_addrcount_new(4);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    unsigned held;
    char a[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(a, sizeof(a), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        CU_ASSERT_PTR_NOT_NULL(cf_addrcount_take(c, a, &held));
    }
    CU_ASSERT_EQUAL(cf_addrcount_addresses(c), 5000);
    cf_addrcount_free(c);
}

static cf_addrcount *shared;
static void *churn(void *arg)
{
    char a[32];
    snprintf(a, sizeof(a), "203.0.113.%d", (int)(long)arg % 3);
    int refused = 0;
    for (int i = 0; i < 20000; i++) {
        unsigned held;
        cf_addr_slot *s = cf_addrcount_take(shared, a, &held);
        if (!s) {
            refused++;
            continue;
        }
        if (held > 3)
            refused = -1000000; /* the cap did not hold */
        cf_addrcount_release(s);
    }
    return (void *)(long)(refused < 0 ? -1 : 0);
}

static void test_threads(void)
{
    shared = cf_addrcount_new(3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(shared);
    pthread_t th[8];
    for (long i = 0; i < 8; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, churn, (void *)i), 0);
    for (int i = 0; i < 8; i++) {
        void *r = NULL;
        pthread_join(th[i], &r);
        CU_ASSERT_EQUAL((long)r, 0);
    }
    CU_ASSERT_EQUAL(cf_addrcount_addresses(shared), 0);
    cf_addrcount_free(shared);
}

static const cf_test tests[] = {
    {"the cap holds per address; a release frees a slot", test_cap_per_address},
    {"cap 0 is unlimited; long and NULL names", test_unlimited_and_long_names},
    {"freed with slots taken", test_free_with_slots},
    {"eight threads take and release: the cap holds, counts end at zero", test_threads},
};
static const cf_suite suites[] = {CF_SUITE("addrcount", NULL, NULL, tests)};

int main(int argc, char **argv)
{
    return CF_TEST_MAIN(argc, argv, suites);
}
