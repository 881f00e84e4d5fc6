/*
 * backend_route.c - a test backend for the plugin host (ABI 2.0, and
 * answer_hub from 2.2 where the host has it).
 *
 * Options:
 *   route = PATH PEER [FRAMING]   exact path -> peer URL (and framing name)
 *   hub   = PATH                  PATH's answer is a fan-out hub (answer_hub,
 *                                 checked with WSY_HAS_FIELD: 501 without)
 *   slow  = PATH                  sleep 2 s in query before answering PATH
 *   fail  = MESSAGE               configure fails with MESSAGE (WSY_EINVAL)
 * start fails without any route. query: a matching route answers its peer,
 * accepts the first offered subprotocol and echoes the X-Echo request header
 * as X-Seen; a `deny` cookie rejects with 401; anything else is 403.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <websocksy.h>

#define MAX_ROUTES 16

struct route {
    char *path;
    char *peer;
    char *framing; /* NULL: the default */
};

static const wsy_host_api *host;
static wsy_plugin *self;
static struct route routes[MAX_ROUTES];
static size_t route_count;
static char *slow_path;
static char *hub_path;

static char *copy(wsy_str s) {
    char *p = malloc(s.len + 1);
    if (p == NULL) {
        return NULL;
    }
    if (s.len > 0) {
        memcpy(p, s.ptr, s.len);
    }
    p[s.len] = '\0';
    return p;
}

static int equals(wsy_str s, const char *text) {
    size_t n = strlen(text);
    return s.ptr != NULL && s.len == n && memcmp(s.ptr, text, n) == 0;
}

static wsy_str view(const char *text) {
    wsy_str s;
    s.ptr = text;
    s.len = strlen(text);
    return s;
}

static void say(uint32_t level, const char *text) {
    host->log(self, level, view(text));
}

static wsy_status configure(void *userdata, wsy_str key, wsy_str value, wsy_error *error) {
    (void)userdata;
    if (equals(key, "route")) {
        char *v, *peer, *framing;
        if (route_count == MAX_ROUTES) {
            host->error_set(error, WSY_STR("too many routes"));
            return WSY_EINVAL;
        }
        v = copy(value);
        if (v == NULL) {
            return WSY_ERROR;
        }
        peer = strchr(v, ' ');
        if (peer == NULL) {
            free(v);
            host->error_set(error, WSY_STR("expected 'PATH PEER [FRAMING]'"));
            return WSY_EINVAL;
        }
        *peer++ = '\0';
        framing = strchr(peer, ' ');
        if (framing != NULL) {
            *framing++ = '\0';
        }
        routes[route_count].path = v;
        routes[route_count].peer = peer;
        routes[route_count].framing = framing;
        route_count++;
        return WSY_OK;
    }
    if (equals(key, "slow")) {
        free(slow_path);
        slow_path = copy(value);
        return slow_path != NULL ? WSY_OK : WSY_ERROR;
    }
    if (equals(key, "hub")) {
        free(hub_path);
        hub_path = copy(value);
        return hub_path != NULL ? WSY_OK : WSY_ERROR;
    }
    if (equals(key, "fail")) {
        host->error_set(error, value);
        return WSY_EINVAL;
    }
    return WSY_EUNKNOWN_KEY;
}

static wsy_status start(void *userdata, wsy_error *error) {
    char line[64];
    (void)userdata;
    if (route_count == 0) {
        host->error_set(error, WSY_STR("no route configured"));
        return WSY_EINVAL;
    }
    snprintf(line, sizeof line, "started with %lu route(s)", (unsigned long)route_count);
    say(WSY_LOG_INFO, line);
    return WSY_OK;
}

static wsy_status query(void *userdata, const wsy_request *req, wsy_answer *answer) {
    char line[256];
    wsy_str value;
    size_t i;
    wsy_status st;
    (void)userdata;
    snprintf(line, sizeof line, "query %.*s", (int)req->path.len, req->path.ptr);
    say(WSY_LOG_INFO, line);
    if (host->request_cookie(req, WSY_STR("deny"), &value) == WSY_OK) {
        return host->answer_reject(answer, 401, WSY_STR("cookie says no"));
    }
    if (slow_path != NULL && equals(req->path, slow_path)) {
        struct timespec ts;
        ts.tv_sec = 2;
        ts.tv_nsec = 0;
        nanosleep(&ts, NULL);
    }
    for (i = 0; i < route_count; i++) {
        if (!equals(req->path, routes[i].path)) {
            continue;
        }
        st = host->answer_peer(answer, view(routes[i].peer));
        if (st == WSY_OK && hub_path != NULL && equals(req->path, hub_path)) {
            /* A 2.0 or 2.1 host's table ends before answer_hub. */
            if (!WSY_HAS_FIELD(host, wsy_host_api, answer_hub) || host->answer_hub == NULL) {
                return host->answer_reject(answer, 501, WSY_STR("no hubs on this host"));
            }
            st = host->answer_hub(answer, 1);
        }
        if (st == WSY_OK && routes[i].framing != NULL) {
            st = host->answer_framing(answer, view(routes[i].framing), (wsy_str){NULL, 0});
        }
        if (st == WSY_OK && req->protocol_count > 0) {
            st = host->answer_protocol(answer, 0);
        }
        if (st == WSY_OK && host->request_header(req, WSY_STR("x-echo"), &value) == WSY_OK) {
            st = host->answer_header(answer, WSY_STR("X-Seen"), value);
        }
        return st;
    }
    return host->answer_reject(answer, 403, WSY_STR("forbidden"));
}

static void cleanup(void *userdata) {
    size_t i;
    (void)userdata;
    for (i = 0; i < route_count; i++) {
        free(routes[i].path);
    }
    free(slow_path);
    free(hub_path);
    say(WSY_LOG_INFO, "cleanup");
}

WSY_EXPORT wsy_status websocksy_plugin_v2(wsy_plugin *plugin, const wsy_host_api *h, wsy_error *error) {
    static wsy_backend b;
    if (h->abi_major != WSY_ABI_MAJOR) {
        h->error_set(error, WSY_STR("host ABI major differs"));
        return WSY_EVERSION;
    }
    host = h;
    self = plugin;
    memset(&b, 0, sizeof b);
    b.size = sizeof b;
    b.abi_major = WSY_ABI_MAJOR;
    b.abi_minor = WSY_ABI_MINOR;
    b.name = "route";
    b.configure = configure;
    b.start = start;
    b.query = query;
    b.cleanup = cleanup;
    return h->register_backend(plugin, &b);
}
