/*
 * framing_bad.c - test framings for the plugin host (ABI 2.0).
 *
 *   semicolon  "a;b;" -> messages "a", "b" (the ';' dropped with DISCARD);
 *              framing-config "text" or "binary" picks the opcode, anything
 *              else fails state_new; state_free logs the count. Options
 *              ([framing:semicolon], --framing-option semicolon:KEY=VALUE):
 *              separator = one byte instead of ';', opcode = text|binary
 *              (the default for connections without a config; "text").
 *              configure logs each option (debug), and fails with WSY_ESTATE once a
 *              state exists (the host must configure first).
 *   overrun    claims one byte more than it was given;
 *   negative   returns -1;
 *   badop      sets opcode 7.
 *
 * With -DTEST_OLD_SIZE every descriptor is registered with the size of the
 * first ABI 2.0 framings, which ended before `configure`: configure is still
 * set in memory, and the host must not see it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <websocksy.h>

static const wsy_host_api *host;
static wsy_plugin *self;

/* The semicolon framing's library-level options: its userdata. */
struct semi_options {
    uint8_t separator;
    int binary;
    unsigned long states; /* state_new calls so far */
};

static struct semi_options semi_defaults = {';', 0, 0};

struct semi {
    uint8_t separator;
    int binary;
    unsigned long messages;
};

static int equals(wsy_str s, const char *text) {
    size_t n = strlen(text);
    return s.ptr != NULL && s.len == n && memcmp(s.ptr, text, n) == 0;
}

static void log_line(const char *prefix, wsy_str key, wsy_str value) {
    char line[160];
    wsy_str m;
    int n = snprintf(line, sizeof line, "%s %.*s=%.*s", prefix, (int)(key.len > 60 ? 60 : key.len),
                     key.ptr != NULL ? key.ptr : "", (int)(value.len > 60 ? 60 : value.len),
                     value.ptr != NULL ? value.ptr : "");
    m.ptr = line;
    m.len = n < 0 ? 0 : (size_t)n;
    host->log(self, WSY_LOG_DEBUG, m);
}

static wsy_status semi_configure(void *userdata, wsy_str key, wsy_str value, wsy_error *error) {
    struct semi_options *o = userdata;
    if (o->states != 0) {
        host->error_set(error, WSY_STR("configure called after state_new"));
        return WSY_ESTATE;
    }
    log_line("semicolon configured", key, value);
    if (equals(key, "separator")) {
        if (value.ptr == NULL || value.len != 1) {
            host->error_set(error, WSY_STR("separator must be one byte"));
            return WSY_EINVAL;
        }
        o->separator = (uint8_t)value.ptr[0];
        return WSY_OK;
    }
    if (equals(key, "opcode")) {
        if (!equals(value, "text") && !equals(value, "binary")) {
            host->error_set(error, WSY_STR("opcode must be text or binary"));
            return WSY_EINVAL;
        }
        o->binary = equals(value, "binary");
        return WSY_OK;
    }
    return WSY_EUNKNOWN_KEY;
}

static wsy_status semi_new(void *userdata, wsy_str config, void **state, wsy_error *error) {
    struct semi_options *o = userdata;
    struct semi *s;
    if (config.ptr != NULL && !equals(config, "text") && !equals(config, "binary")) {
        host->error_set(error, WSY_STR("config must be text or binary"));
        return WSY_EINVAL;
    }
    s = malloc(sizeof *s);
    if (s == NULL) {
        return WSY_ERROR;
    }
    o->states++;
    s->separator = o->separator;
    s->binary = config.ptr != NULL ? equals(config, "binary") : o->binary;
    s->messages = 0;
    *state = s;
    return WSY_OK;
}

static void semi_free(void *userdata, void *state) {
    struct semi *s = state;
    char line[80];
    wsy_str m;
    (void)userdata;
    snprintf(line, sizeof line, "semicolon state freed after %lu messages", s->messages);
    m.ptr = line;
    m.len = strlen(line);
    host->log(self, WSY_LOG_INFO, m);
    free(s);
}

static int64_t semi_frame(void *userdata, void *state, const uint8_t *data, size_t length, size_t last_read,
                          wsy_opcode *opcode) {
    struct semi *s = state;
    size_t i;
    (void)userdata;
    (void)last_read;
    if (data[0] == s->separator) {
        *opcode = WSY_OPCODE_DISCARD;
        return 1;
    }
    for (i = 1; i < length; i++) {
        if (data[i] == s->separator) {
            *opcode = s->binary ? WSY_OPCODE_BINARY : WSY_OPCODE_TEXT;
            s->messages++;
            return (int64_t)i;
        }
    }
    return 0;
}

static int64_t overrun_frame(void *userdata, void *state, const uint8_t *data, size_t length, size_t last_read,
                             wsy_opcode *opcode) {
    (void)userdata;
    (void)state;
    (void)data;
    (void)last_read;
    *opcode = WSY_OPCODE_TEXT;
    return (int64_t)length + 1;
}

static int64_t negative_frame(void *userdata, void *state, const uint8_t *data, size_t length, size_t last_read,
                              wsy_opcode *opcode) {
    (void)userdata;
    (void)state;
    (void)data;
    (void)length;
    (void)last_read;
    (void)opcode;
    return -1;
}

static int64_t badop_frame(void *userdata, void *state, const uint8_t *data, size_t length, size_t last_read,
                           wsy_opcode *opcode) {
    (void)userdata;
    (void)state;
    (void)data;
    (void)last_read;
    *opcode = 7;
    return (int64_t)length;
}

static wsy_status add(wsy_plugin *plugin, const char *name, int64_t (*frame)(void *, void *, const uint8_t *, size_t,
                                                                               size_t, wsy_opcode *),
                      int with_state) {
    wsy_framing f;
    memset(&f, 0, sizeof f);
#ifdef TEST_OLD_SIZE
    f.size = (uint32_t)offsetof(wsy_framing, configure);
#else
    f.size = sizeof f;
#endif
    f.abi_major = WSY_ABI_MAJOR;
    f.abi_minor = WSY_ABI_MINOR;
    f.name = name;
    f.frame = frame;
    if (with_state) {
        f.userdata = &semi_defaults;
        f.state_new = semi_new;
        f.state_free = semi_free;
        f.configure = semi_configure;
    }
    /* On the stack on purpose: the host copies the descriptor. */
    return host->register_framing(plugin, &f);
}

WSY_EXPORT wsy_status websocksy_plugin_v2(wsy_plugin *plugin, const wsy_host_api *h, wsy_error *error) {
    wsy_status st;
    if (h->abi_major != WSY_ABI_MAJOR) {
        h->error_set(error, WSY_STR("host ABI major differs"));
        return WSY_EVERSION;
    }
    host = h;
    self = plugin;
    st = add(plugin, "semicolon", semi_frame, 1);
    if (st == WSY_OK) {
        st = add(plugin, "overrun", overrun_frame, 0);
    }
    if (st == WSY_OK) {
        st = add(plugin, "negative", negative_frame, 0);
    }
    if (st == WSY_OK) {
        st = add(plugin, "badop", badop_frame, 0);
    }
    return st;
}
