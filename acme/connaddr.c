#include "acme/connaddr.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <pthread.h>

static int addr_idx = -1;
static pthread_once_t addr_once = PTHREAD_ONCE_INIT;

static void addr_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    cf_addrcount_release(ptr);
}

static void make_idx(void)
{
    addr_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, addr_free_cb);
}

int acme_connaddr_init(void)
{
    pthread_once(&addr_once, make_idx);
    return addr_idx < 0 ? -1 : 0;
}

int acme_connaddr_take(struct evhttp_connection *ec, cf_addrcount *c, const char *addr)
{
    struct bufferevent *bev = ec ? evhttp_connection_get_bufferevent(ec) : NULL;
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    if (!ssl || !c || addr_idx < 0 || SSL_get_ex_data(ssl, addr_idx))
        return 0;
    unsigned held = 0;
    cf_addr_slot *s = cf_addrcount_take(c, addr, &held);
    if (!s)
        return -1;
    SSL_set_ex_data(ssl, addr_idx, s);
    return 0;
}
