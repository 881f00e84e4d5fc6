/*
 * backend_identity.c - a test backend for the plugin host (ABI 2.1).
 *
 * Reads the fields 2.1 appended to wsy_request, each only after
 * WSY_HAS_FIELD says the host's struct has it, and reports them on the 101
 * (the peer is always mirror://):
 *   X-Size         req->size
 *   X-User         [user], (absent), or (no field) on an older host
 *   X-TLS-Subject  [subject], (absent), or (no field)
 *   X-TLS-SANs     [san][san]..., (none), or (no field)
 * Built and queried through the real loader by the unit tests of
 * core/src/plugin/backend.rs.
 */
#include <stdio.h>
#include <string.h>

#include <websocksy.h>

static const wsy_host_api *host;

static wsy_str view(const char *text) {
    wsy_str s;
    s.ptr = text;
    s.len = strlen(text);
    return s;
}

static void show(char *out, size_t cap, wsy_str s) {
    if (s.ptr == NULL) {
        snprintf(out, cap, "(absent)");
    } else {
        snprintf(out, cap, "[%.*s]", (int)s.len, s.ptr);
    }
}

static wsy_status header(wsy_answer *answer, const char *name, const char *value) {
    return host->answer_header(answer, view(name), view(value));
}

static wsy_status query(void *userdata, const wsy_request *req, wsy_answer *answer) {
    char buf[512];
    size_t i, used;
    wsy_status st;
    (void)userdata;

    st = host->answer_peer(answer, WSY_STR("mirror://"));
    snprintf(buf, sizeof buf, "%lu", (unsigned long)req->size);
    if (st == WSY_OK) st = header(answer, "X-Size", buf);

    if (WSY_HAS_FIELD(req, wsy_request, user)) {
        show(buf, sizeof buf, req->user);
    } else {
        snprintf(buf, sizeof buf, "(no field)");
    }
    if (st == WSY_OK) st = header(answer, "X-User", buf);

    if (WSY_HAS_FIELD(req, wsy_request, tls_subject)) {
        show(buf, sizeof buf, req->tls_subject);
    } else {
        snprintf(buf, sizeof buf, "(no field)");
    }
    if (st == WSY_OK) st = header(answer, "X-TLS-Subject", buf);

    /* The count is the later of the two: it covers tls_sans too. */
    if (!WSY_HAS_FIELD(req, wsy_request, tls_san_count)) {
        snprintf(buf, sizeof buf, "(no field)");
    } else if (req->tls_san_count == 0) {
        snprintf(buf, sizeof buf, "(none)");
    } else {
        used = 0;
        for (i = 0; i < req->tls_san_count && used < sizeof buf; i++) {
            wsy_str san = req->tls_sans[i];
            used += (size_t)snprintf(buf + used, sizeof buf - used, "[%.*s]", (int)san.len, san.ptr);
        }
    }
    if (st == WSY_OK) st = header(answer, "X-TLS-SANs", buf);
    return st;
}

WSY_EXPORT wsy_status websocksy_plugin_v2(wsy_plugin *plugin, const wsy_host_api *h, wsy_error *error) {
    static wsy_backend b;
    if (h->abi_major != WSY_ABI_MAJOR) {
        h->error_set(error, WSY_STR("host ABI major differs"));
        return WSY_EVERSION;
    }
    host = h;
    memset(&b, 0, sizeof b);
    b.size = sizeof b;
    b.abi_major = WSY_ABI_MAJOR;
    b.abi_minor = WSY_ABI_MINOR;
    b.name = "identity";
    b.flags = WSY_BACKEND_NONBLOCKING;
    b.query = query;
    return h->register_backend(plugin, &b);
}
