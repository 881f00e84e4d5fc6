/* framing_netstring.c - a websocksy framing in C: djb's netstrings.
 *
 * The peer sends `LEN:DATA,` (LEN in decimal, no leading zeros); each DATA
 * becomes one WebSocket message, text if it is valid UTF-8, else binary.
 * `5:hello,3:abc,` arrives as the messages `hello` and `abc`.
 *
 * A framing can only cut the buffer, never edit it, so each netstring is
 * three steps: DISCARD `LEN:`, send DATA, DISCARD `,`. An empty netstring
 * (`0:,`) sends nothing: a framing cannot return an empty message.
 *
 * Config (`framing-config`): `max=N`, the largest DATA accepted (default
 * 1048576). A longer or malformed netstring closes the connection with 1011.
 *
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -shared -fPIC -Iinclude \
 *      -o plugins/c/framing_netstring.so plugins/c/framing_netstring.c
 *   websocksy --plugin-dir plugins/c -c host=tcp://127.0.0.1:7000 -c framing=netstring
 */
#include <stdlib.h>
#include <string.h>
#include <websocksy.h>

#define DEFAULT_MAX ((size_t)1 << 20)
#define MAX_DIGITS 15 /* so LEN never overflows */

static const wsy_host_api *host;
static const wsy_plugin *self;

/* Where a connection is in its current netstring. */
enum phase { LENGTH, DATA, COMMA };

struct netstring {
    size_t max;   /* from the config */
    enum phase phase;
    size_t left;  /* DATA bytes still to send */
};

/* Valid UTF-8 (RFC 3629): no overlong forms, surrogates or code points
 * above U+10FFFF. */
static int utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len, k;
        uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0) lo = 0xa0; /* overlong */
            if (c == 0xed) hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0) lo = 0x90; /* overlong */
            if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
        } else {
            return 0;
        }
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf) return 0;
        i += len;
    }
    return 1;
}

/* Parse a decimal size_t of 1 to MAX_DIGITS digits, no sign, no leading
 * zero unless it is "0". Returns 0 if `s` is anything else. */
static int parse_size(const char *s, size_t n, size_t *out) {
    size_t i, v = 0;
    if (n == 0 || n > MAX_DIGITS || (n > 1 && s[0] == '0')) return 0;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (size_t)(s[i] - '0');
    }
    *out = v;
    return 1;
}

static void fail(wsy_error *error, const char *why) {
    wsy_str s = {why, strlen(why)};
    host->error_set(error, s);
}

/* A connection starts (event loop thread; at start-up also once on the main
 * thread, to check a framing-config given on the command line). */
static wsy_status state_new(void *userdata, wsy_str config, void **state, wsy_error *error) {
    struct netstring *ns;
    size_t max = DEFAULT_MAX;
    (void)userdata;
    if (config.ptr != NULL && config.len > 0) {
        if (config.len < 4 || memcmp(config.ptr, "max=", 4) != 0
            || !parse_size(config.ptr + 4, config.len - 4, &max) || max == 0) {
            fail(error, "netstring: framing-config must be max=N, N a positive decimal number");
            return WSY_EINVAL;
        }
    }
    ns = malloc(sizeof *ns);
    if (ns == NULL) {
        fail(error, "netstring: out of memory");
        return WSY_ERROR;
    }
    ns->max = max;
    ns->phase = LENGTH;
    ns->left = 0;
    *state = ns;
    return WSY_OK;
}

static void state_free(void *userdata, void *state) {
    (void)userdata;
    free(state);
}

/* A stream that is not netstrings: log why, close with 1011. */
static int64_t malformed(const char *why) {
    wsy_str s = {why, strlen(why)};
    host->log(self, WSY_LOG_WARN, s);
    return -1;
}

/* Bytes arrived (event loop thread: never block). data[0..length) is what
 * is not framed yet; return how many bytes the next step takes. */
static int64_t frame(void *userdata, void *state, const uint8_t *data, size_t length, size_t last_read,
                     wsy_opcode *opcode) {
    struct netstring *ns = state;
    size_t i, len;
    (void)userdata;
    (void)last_read; /* LEN is at most MAX_DIGITS bytes: rescanning is cheap */
    if (length == 0) return 0;
    switch (ns->phase) {
    case LENGTH:
        for (i = 0; i < length && i <= MAX_DIGITS && data[i] != ':'; i++)
            if (data[i] < '0' || data[i] > '9') return malformed("netstring: length is not a decimal number");
        if (i > MAX_DIGITS) return malformed("netstring: length too long");
        if (i == length) return 0; /* no ':' yet */
        if (!parse_size((const char *)data, i, &len)) return malformed("netstring: malformed length");
        if (len > ns->max) return malformed("netstring: longer than max");
        ns->left = len;
        ns->phase = len > 0 ? DATA : COMMA;
        *opcode = WSY_OPCODE_DISCARD; /* drop `LEN:` */
        return (int64_t)(i + 1);
    case DATA:
        if (length < ns->left) return 0; /* one message: wait for all of it */
        *opcode = utf8_valid(data, ns->left) ? WSY_OPCODE_TEXT : WSY_OPCODE_BINARY;
        ns->phase = COMMA;
        return (int64_t)ns->left;
    case COMMA:
        if (data[0] != ',') return malformed("netstring: no ',' after the data");
        ns->phase = LENGTH;
        *opcode = WSY_OPCODE_DISCARD; /* drop `,` */
        return 1;
    }
    return -1;
}

/* The peer closed in the middle of a netstring: drop the fragment. */
static wsy_status finish(void *userdata, void *state, const uint8_t *data, size_t length, wsy_opcode *opcode) {
    (void)userdata;
    (void)state;
    (void)data;
    (void)length;
    host->log(self, WSY_LOG_DEBUG, WSY_STR("netstring: peer closed inside a netstring; dropped"));
    *opcode = WSY_OPCODE_DISCARD;
    return WSY_OK;
}

WSY_EXPORT wsy_status websocksy_plugin_v2(wsy_plugin *plugin, const wsy_host_api *h, wsy_error *error) {
    const wsy_framing f = { /* the host copies it */
        .size = sizeof(wsy_framing), .abi_major = WSY_ABI_MAJOR, .abi_minor = WSY_ABI_MINOR,
        .name = "netstring", .state_new = state_new, .state_free = state_free, .frame = frame, .finish = finish,
    };
    if (h->abi_major != WSY_ABI_MAJOR) {
        h->error_set(error, WSY_STR("netstring: built for plugin ABI 2"));
        return WSY_EVERSION;
    }
    host = h;
    self = plugin;
    return h->register_framing(plugin, &f);
}
