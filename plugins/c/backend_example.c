/* backend_example.c - a websocksy backend in C that routes by path.
 * Options: `route = PREFIX URL` (repeatable) and `default = URL`. The longest
 * PREFIX the path starts with wins, else the default, else HTTP 404. A
 * request `?framing=NAME` picks the framing. Build and run:
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -shared -fPIC -Iinclude \
 *      -o plugins/c/backend_example.so plugins/c/backend_example.c
 *   websocksy --plugin-dir plugins/c -b example -c 'route=/vnc tcp://127.0.0.1:5900' */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <websocksy.h>

#define MAX_ROUTES 32
static const wsy_host_api *host;
static wsy_plugin *self;
static wsy_str prefixes[MAX_ROUTES], urls[MAX_ROUTES], default_url; /* our copies */
static size_t nroutes;

static int is(wsy_str s, const char *lit) { return s.len == strlen(lit) && !memcmp(s.ptr, lit, s.len); }
static int starts_with(wsy_str s, wsy_str p) { return p.len <= s.len && !memcmp(s.ptr, p.ptr, p.len); }

/* The host's views are lent for one call only: keep a copy (0: no memory). */
static int keep(wsy_str *to, const char *p, size_t n) {
    char *c = malloc(n + 1);
    if (!c) return 0;
    if (n) memcpy(c, p, n);
    free((void *)to->ptr);
    to->ptr = c;
    to->len = n;
    return 1;
}

/* Main thread, once per option, before any query. */
static wsy_status configure(void *ud, wsy_str key, wsy_str value, wsy_error *error) {
    const char *space = value.len ? memchr(value.ptr, ' ', value.len) : NULL;
    size_t n = space ? (size_t)(space - value.ptr) : 0;
    (void)ud;
    if (is(key, "default")) return keep(&default_url, value.ptr, value.len) ? WSY_OK : WSY_ERROR; /* no memory */
    if (!is(key, "route")) return WSY_EUNKNOWN_KEY; /* the host names the key */
    if (!space || nroutes == MAX_ROUTES) {
        host->error_set(error, WSY_STR("route: expected `PREFIX URL`, at most 32 times"));
        return WSY_EINVAL;
    }
    if (!keep(&prefixes[nroutes], value.ptr, n) || !keep(&urls[nroutes], space + 1, value.len - n - 1))
        return WSY_ERROR;
    nroutes++;
    return WSY_OK;
}

/* Worker threads, several at once: it only reads what configure stored. */
static wsy_status query(void *ud, const wsy_request *req, wsy_answer *answer) {
    const wsy_str *match = NULL;
    wsy_str ua, to = default_url, q = req->query;
    size_t i;
    char line[128];
    (void)ud;
    if (host->request_header(req, WSY_STR("User-Agent"), &ua) == WSY_OK) {
        snprintf(line, sizeof line, "User-Agent: %.*s", (int)(ua.len < 100 ? ua.len : 100), ua.ptr);
        host->log(self, WSY_LOG_DEBUG, (wsy_str){line, strlen(line)});
    }
    for (i = 0; i < nroutes; i++) /* the longest matching prefix wins */
        if (starts_with(req->path, prefixes[i]) && (!match || prefixes[i].len > match->len)) {
            match = &prefixes[i];
            to = urls[i];
        }
    if (!to.ptr) return host->answer_reject(answer, 404, WSY_STR("no route for this path"));
    if (q.ptr && q.len > 8 && !memcmp(q.ptr, "framing=", 8) /* only `?framing=NAME`, for brevity */
        && host->answer_framing(answer, (wsy_str){q.ptr + 8, q.len - 8}, (wsy_str){NULL, 0}) != WSY_OK)
        return host->answer_reject(answer, 400, WSY_STR("unknown framing"));
    return host->answer_peer(answer, to);
}

static void cleanup(void *ud) {
    size_t i;
    (void)ud;
    for (i = 0; i < MAX_ROUTES; i++) { /* free(NULL) is fine */
        free((void *)prefixes[i].ptr);
        free((void *)urls[i].ptr);
    }
    free((void *)default_url.ptr);
}

WSY_EXPORT wsy_status websocksy_plugin_v2(wsy_plugin *plugin, const wsy_host_api *h, wsy_error *error) {
    const wsy_backend b = { /* the host copies it; callbacks left out are NULL */
        .size = sizeof(wsy_backend), .abi_major = WSY_ABI_MAJOR, .abi_minor = WSY_ABI_MINOR,
        .name = "example", .configure = configure, .query = query, .cleanup = cleanup,
    };
    if (h->abi_major != WSY_ABI_MAJOR) {
        h->error_set(error, WSY_STR("built for plugin ABI 2"));
        return WSY_EVERSION;
    }
    host = h;
    self = plugin;
    return h->register_backend(plugin, &b);
}
