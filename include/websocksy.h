/*
 * websocksy.h - the plugin interface of websocksy, ABI 2.2
 *
 * websocksy bridges WebSocket clients to TCP, UDP and Unix sockets. Two
 * things are pluggable, both written as shared objects in C (this header) or
 * in Rust (the websocksy-plugin crate, which mirrors it):
 *
 *   backends  choose the peer for each connection from the upgrade request
 *             (path, query, headers, cookies, subprotocols, client address);
 *   framings  cut the peer's byte stream into WebSocket messages.
 *
 * One library may provide any number of both.
 *
 * ---------------------------------------------------------------------------
 * Loading and versioning
 * ---------------------------------------------------------------------------
 * The host opens the library with dlopen(RTLD_NOW | RTLD_LOCAL), looks up the
 * one entry symbol WSY_ENTRY_SYMBOL and calls it once, on the main thread,
 * before any traffic. The entry registers its backends and framings with the
 * host API table it is given, then returns. Libraries stay loaded until the
 * process exits.
 *
 * The ABI version is MAJOR.MINOR. A MINOR release only appends: new fields at
 * the end of structs, new functions at the end of wsy_host_api, new constants.
 * A MAJOR release may change anything. The host accepts a descriptor when its
 * abi_major equals the host's WSY_ABI_MAJOR and its abi_minor is not greater
 * than the host's WSY_ABI_MINOR.
 *
 * A descriptor's abi_minor is the minor the plugin needs from the host.
 * WSY_ABI_MINOR, the header's, is always right. A plugin that reads every
 * field newer than some minor N only after checking it (WSY_HAS_FIELD), and
 * needs no newer descriptor field honoured, may declare N instead, so that
 * 2.N hosts load it too (the Rust SDK declares 0 this way).
 *
 * What each minor added:
 *   2.0  everything not listed below.
 *   2.1  wsy_request: user (the HTTP Basic user), tls_subject, tls_sans and
 *        tls_san_count (the verified TLS client certificate), appended
 *        after `reserved`.
 *   2.2  wsy_host_api: answer_hub (share one peer connection among every
 *        client answered with the same peer: a fan-out hub), appended
 *        after request_cookie.
 *
 * Every struct that crosses the boundary starts with `uint32_t size`, the
 * sizeof() the writer was built with:
 *   - descriptors you register: set size = sizeof(the struct); the host reads
 *     only that many bytes and treats later fields (and a field `size` only
 *     partly covers) as NULL/0, so a plugin built against 2.0 keeps loading
 *     into a 2.5 host. wsy_framing's last field, configure, was appended
 *     before 2.0 shipped: a framing descriptor whose size ends before it is
 *     accepted as a 2.0 framing without options;
 *   - structs the host gives you (wsy_host_api, wsy_request): before using a
 *     field added after 2.0, check it is inside `size` (WSY_HAS_FIELD); a
 *     function appended to wsy_host_api is called only when
 *     WSY_HAS_FIELD(host, wsy_host_api, NAME) and it is not NULL.
 *
 * The original websocksy's plugins (API version 1: `init`, `configure`,
 * `query`, `cleanup` backends and framings registered through
 * core_register_framing) are loaded too, by a separate path; they do not use
 * this header.
 *
 * ---------------------------------------------------------------------------
 * Memory and strings
 * ---------------------------------------------------------------------------
 * Whoever allocates frees; no allocation crosses the boundary.
 *   - Strings and byte ranges are passed as borrowed views (wsy_str): a
 *     pointer and a length, NOT NUL-terminated, valid only for the duration
 *     of the call that passes them. Copy what you keep.
 *   - A wsy_str with ptr == NULL means "absent" (as opposed to empty: a
 *     non-NULL ptr with len 0).
 *   - What you give the host (answers, errors, log lines) is copied by the
 *     host before the call returns.
 *   - Descriptor strings (`name`) must stay valid until the process exits
 *     (string literals).
 *   - Per-connection framing state is allocated by your state_new and freed
 *     by your state_free, never by the host.
 *
 * ---------------------------------------------------------------------------
 * Threads and blocking
 * ---------------------------------------------------------------------------
 *   - The entry, configure (of backends and of framings), start and cleanup
 *     run on the main thread, never concurrently with anything else of
 *     yours. A framing's configure calls all come before its first
 *     state_new.
 *   - Backend query runs on one of the host's worker threads, so it MAY
 *     block (read a file, ask a database, make an HTTP call) without
 *     stalling other connections. Several queries can run at the same time
 *     on different threads: query must be thread-safe. A backend whose query
 *     never blocks may set WSY_BACKEND_NONBLOCKING; the host then calls it on
 *     the event loop thread of the connection and saves a thread hop (with
 *     several loops, that is still several threads at once).
 *   - A server runs one event loop per core (--threads N, default: the
 *     CPUs the process may use; a process with client connections only
 *     runs one). Framing callbacks (state_new, frame,
 *     finish, state_free) run on the event loop thread of their
 *     connection: the callbacks of ONE state are never concurrent and come
 *     from one thread (a connection stays on its loop; the one exception,
 *     a connection whose backend answers with a hub, moves once to the
 *     hub's loop after state_new and before any frame call), but
 *     callbacks of DIFFERENT states run at the same time on different
 *     loops. Anything a framing shares between its states (its library
 *     options from configure, a global table) is therefore read by several
 *     threads at once: treat library-level options as read-only after
 *     start-up, and lock or make atomic whatever else is shared. They MUST
 *     NOT block: every connection of that loop waits while they run. (At
 *     start-up the host also calls state_new and state_free once on the
 *     main thread to check a framing-config given on the command line or in
 *     the config file.) With --threads 1 there is one loop, as in earlier
 *     releases.
 *   - Plugins of the original websocksy (API version 1) were written for a
 *     single thread: the host serializes their framing calls with each
 *     other (one lock for all v1 framing calls) and each v1 backend's
 *     queries with each other (one lock per backend), whatever --threads
 *     says. A v1 framing call and a v1 backend query may still run at the
 *     same time, as they could in earlier releases (backends ran on
 *     worker threads already).
 *   - Host functions may be called from any thread.
 *
 * ---------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------------
 * Functions return wsy_status: WSY_OK (0) or a negative WSY_E* code. Where a
 * wsy_error* is passed, a failing function should describe the problem with
 * host->error_set(error, msg); the host prints it as one line naming the
 * plugin, and at start-up exits with status 2.
 *
 * ---------------------------------------------------------------------------
 * Panics and exceptions
 * ---------------------------------------------------------------------------
 * Nothing may unwind across this interface, in either direction. The host
 * cannot catch what escapes one of your callbacks: a Rust panic that reaches
 * an `extern "C"` function aborts the process right there, inside your
 * library, and C has nothing to unwind (a C++ exception thrown through a C
 * frame is undefined behaviour). So the boundary is on your side:
 *   - Rust plugins built with the websocksy-plugin crate get it for free: its
 *     trampolines run your code under catch_unwind and turn a panic into the
 *     failure of that one call (frame: the connection closes with 1011;
 *     state_new, query: HTTP 500; configure, start, the entry: start-up
 *     fails). Build them with panic = "unwind", the default.
 *   - C++ plugins must catch every exception in each callback and return a
 *     failure status.
 * The host's own functions (this table, and the v1 core_* functions) catch
 * their own panics: calling them never unwinds into your code.
 *
 * Example: a backend in C (build: cc -std=c99 -shared -fPIC -Iinclude
 * -o backend_hello.so hello.c; load: websocksy -b ./backend_hello.so)
 *
 *     #include <websocksy.h>
 *     static const wsy_host_api *host;
 *     static wsy_status query(void *ud, const wsy_request *req, wsy_answer *a) {
 *         (void)ud; (void)req;
 *         return host->answer_peer(a, WSY_STR("tcp://127.0.0.1:5900"));
 *     }
 *     WSY_EXPORT wsy_status websocksy_plugin_v2(wsy_plugin *p,
 *             const wsy_host_api *h, wsy_error *e) {
 *         static wsy_backend b;
 *         (void)e;
 *         host = h;
 *         b.size = sizeof b; b.abi_major = WSY_ABI_MAJOR;
 *         b.abi_minor = WSY_ABI_MINOR; b.name = "hello"; b.query = query;
 *         return h->register_backend(p, &b);
 *     }
 */
#ifndef WEBSOCKSY_H
#define WEBSOCKSY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WSY_ABI_MAJOR 2
#define WSY_ABI_MINOR 2
/* The symbol every plugin library exports, of type wsy_entry_fn. */
#define WSY_ENTRY_SYMBOL "websocksy_plugin_v2"

#if defined(__GNUC__) || defined(__clang__)
#define WSY_EXPORT __attribute__((visibility("default")))
#else
#define WSY_EXPORT
#endif

/* Marks a pointer the callee takes ownership of (none so far, in 2.2: the
 * rule is that whoever allocates frees). Kept for documentation of future
 * fields. */
#define WSY_OWN

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */

typedef int32_t wsy_status;
#define WSY_OK 0
/* Failure; details via wsy_error where one was passed. */
#define WSY_ERROR (-1)
/* An argument or configuration value is invalid. */
#define WSY_EINVAL (-2)
/* configure: this key is not an option of this plugin. */
#define WSY_EUNKNOWN_KEY (-3)
/* A descriptor's ABI version is not supported by this host. */
#define WSY_EVERSION (-4)
/* A name is registered twice in the same library. */
#define WSY_EEXIST (-5)
/* A host function was called at a time it does not allow (for example
 * register_backend outside the entry, or an answer_* after query returned). */
#define WSY_ESTATE (-6)

/* ------------------------------------------------------------------------ */
/* Views                                                                     */

/* A borrowed string or byte range: not NUL-terminated, valid during the call
 * it is passed to. ptr == NULL means absent. */
typedef struct wsy_str {
    const char *ptr;
    size_t len;
} wsy_str;

/* A view of a string literal, e.g. WSY_STR("tcp://127.0.0.1:22"). Only
 * literals: the "" prefix makes a `const char *` argument (whose sizeof is
 * not its length) a compile error. In C++ it needs C++11 or later. */
#ifdef __cplusplus
#define WSY_STR(literal) (wsy_str{"" literal, sizeof(literal) - 1})
#else
#define WSY_STR(literal) ((wsy_str){"" literal, sizeof(literal) - 1})
#endif

/* One request header, name as the client spelled it. */
typedef struct wsy_header {
    wsy_str name;
    wsy_str value;
} wsy_header;

/* True when a struct received from the host has `field` (a later minor). */
#ifdef __cplusplus
#define WSY_HAS_FIELD(ptr, type, field) \
    ((ptr)->size >= offsetof(type, field) + sizeof(static_cast<type *>(nullptr)->field))
#else
#define WSY_HAS_FIELD(ptr, type, field) \
    ((ptr)->size >= offsetof(type, field) + sizeof(((type *)0)->field))
#endif

/* ------------------------------------------------------------------------ */
/* Opaque host objects                                                       */

/* Your library, as the host knows it. Passed to the entry; pass it back to
 * log and register_*. Valid until exit. */
typedef struct wsy_plugin wsy_plugin;
/* A backend's answer under construction. Valid during one query call. */
typedef struct wsy_answer wsy_answer;
/* Where a failing call puts its message. Valid during one call. */
typedef struct wsy_error wsy_error;

/* ------------------------------------------------------------------------ */
/* Framing                                                                   */

typedef uint32_t wsy_opcode;
#define WSY_OPCODE_TEXT 1    /* a text message: the bytes must be UTF-8 */
#define WSY_OPCODE_BINARY 2  /* a binary message */
#define WSY_OPCODE_DISCARD 11 /* drop the bytes, send nothing */

/*
 * A framing function, websocksy's contract with the original's defects
 * removed: explicit state, an error return, and an opcode chosen per frame.
 *
 * At start-up the host calls configure once per library-level option (the
 * `[framing:NAME]` section of the config file, `--framing-option
 * NAME:KEY=VALUE`), before any state_new. Then, for each connection, it
 * calls state_new once, then frame every time bytes arrive from the peer,
 * then finish (if the peer closed with bytes left over), then state_free.
 */
typedef struct wsy_framing {
    uint32_t size;      /* sizeof(wsy_framing) */
    uint16_t abi_major; /* WSY_ABI_MAJOR */
    uint16_t abi_minor; /* WSY_ABI_MINOR */
    /* The name backends select it by (`framing = NAME`) and its options are
     * given under ([framing:NAME]). Static. A name registered by a plugin
     * replaces a built-in one of the same name. */
    const char *name;
    /* Passed back as the first argument of every callback. */
    void *userdata;

    /* Optional. Create the state for one connection from the backend's
     * framing config (config.ptr == NULL: no config given). Store it in
     * *state (NULL is a fine state for a stateless framing). Return WSY_OK,
     * or WSY_EINVAL with error_set for a bad config: the connection is then
     * refused with HTTP 500, or start-up fails if the config came from the
     * command line or config file. NULL: state is always NULL. */
    wsy_status (*state_new)(void *userdata, wsy_str config, void **state, wsy_error *error);

    /* Optional. Free what state_new allocated. Called exactly once per
     * successful state_new, never with frame running. */
    void (*state_free)(void *userdata, void *state);

    /* Required. Look at data[0..length), the connection's bytes not yet
     * framed (the oldest first); last_read is how many of the trailing bytes
     * arrived since you last returned 0, so a search can resume where it
     * stopped. Return:
     *   n > 0  send data[0..n) as one message with *opcode set to
     *          WSY_OPCODE_TEXT or WSY_OPCODE_BINARY, or drop them with
     *          WSY_OPCODE_DISCARD; n must not exceed length. The host calls
     *          again at once with the rest.
     *   0      not enough data yet; called again when more arrives.
     *   < 0    the stream cannot be framed: the connection closes with 1011.
     * *opcode is preset to WSY_OPCODE_BINARY before every call. Returning
     * more than length, or any other opcode, also closes with 1011.
     * A text message that is not valid UTF-8 is sent as binary. */
    int64_t (*frame)(void *userdata, void *state, const uint8_t *data, size_t length, size_t last_read,
                     wsy_opcode *opcode);

    /* Optional. The peer closed and data[0..length) was never framed
     * (length > 0). Set *opcode to send it as one last message, or to
     * WSY_OPCODE_DISCARD to drop it. NULL: sent as text if valid UTF-8,
     * else binary. */
    wsy_status (*finish)(void *userdata, void *state, const uint8_t *data, size_t length, wsy_opcode *opcode);

    /* Optional. One library-level option, from a `key = value` line of the
     * config file's [framing:NAME] section or a --framing-option
     * NAME:KEY=VALUE, in the order given. Called on the main thread at
     * start-up, after the entry returned and before any state_new, so it may
     * set defaults that every connection's state_new starts from (a
     * connection's framing config still overrides them). Return
     * WSY_EUNKNOWN_KEY for a key you do not know, WSY_EINVAL (with
     * error_set) for a bad value: start-up fails naming the file and line or
     * the argument. NULL: the framing takes no options and any option is an
     * error. Appended to ABI 2.0 before its release: the host reads it only
     * when `size` covers it (a descriptor of size offsetof(wsy_framing,
     * configure), as the first 2.0 plugins were built, loads with NULL). */
    wsy_status (*configure)(void *userdata, wsy_str key, wsy_str value, wsy_error *error);
} wsy_framing;

/* ------------------------------------------------------------------------ */
/* Backends                                                                  */

/* The upgrade request a backend decides on. The host owns it and everything
 * it points to (strings, arrays, the strings in them); all of it is valid
 * during the query call only: copy what you keep. Fields after `reserved`
 * came in later minors: a host older than the minor that added a field
 * passes a smaller `size`, and the field is not there. Check
 * WSY_HAS_FIELD(request, wsy_request, FIELD) before reading it. */
typedef struct wsy_request {
    uint32_t size;             /* sizeof(wsy_request) as the host was built */
    wsy_str target;            /* request target as sent: path and query, not decoded */
    wsy_str path;              /* target before '?' */
    wsy_str query;             /* target after '?'; ptr NULL when there is no '?' */
    const wsy_header *headers; /* every header in order, names as sent */
    size_t header_count;
    const wsy_str *protocols;  /* offered subprotocols: split on ',', trimmed, duplicates dropped */
    size_t protocol_count;
    wsy_str client_address;    /* "ip:port", IPv6 as "[ip]:port" */
    uint32_t tls;              /* 1 when the client came over TLS (wss://) */
    /* Always 0. Fills what would be tail padding on LP64, so a 4-byte field
     * appended by a later minor cannot hide inside the 2.0 sizeof and look
     * present (WSY_HAS_FIELD) to a plugin running on an older host. */
    uint32_t reserved;

    /* ---- 2.1 ----------------------------------------------------------- */
    /* The user name HTTP Basic authentication accepted; ptr NULL when the
     * request was not authenticated. Present when
     * WSY_HAS_FIELD(request, wsy_request, user). */
    wsy_str user;
    /* The subject of the TLS client certificate the listener verified, as
     * one line in RFC 2253 order ("CN=alice,O=Example"); ptr NULL when the
     * client presented none (or the listener asks for none). A certificate
     * with an empty subject gives a non-NULL empty view. Present when
     * WSY_HAS_FIELD(request, wsy_request, tls_subject). */
    wsy_str tls_subject;
    /* That certificate's subject alternative names, in its order, each as
     * "DNS:name", "IP:address", "email:address" or "URI:uri"; NULL and 0
     * when there is no certificate or it has none. Present when
     * WSY_HAS_FIELD(request, wsy_request, tls_san_count), which covers
     * tls_sans too (check the count, the later of the two). */
    const wsy_str *tls_sans;
    size_t tls_san_count;
} wsy_request;

/* The query may block (it runs on a worker thread). Set this when it never
 * does, to have it run on the event loop instead. */
#define WSY_BACKEND_NONBLOCKING 0x1u

typedef struct wsy_backend {
    uint32_t size;      /* sizeof(wsy_backend) */
    uint16_t abi_major; /* WSY_ABI_MAJOR */
    uint16_t abi_minor; /* WSY_ABI_MINOR */
    /* Selected by `-b NAME` / `backend = NAME`. Static. */
    const char *name;
    void *userdata;
    uint32_t flags;     /* WSY_BACKEND_* */

    /* Optional. One option from the [backend] section or a -c KEY=VALUE, in
     * the order given, before start. Return WSY_EUNKNOWN_KEY for a key you do
     * not know, WSY_EINVAL (with error_set) for a bad value: start-up fails
     * naming the file and line or the argument. NULL: the backend takes no
     * options and any option is an error. */
    wsy_status (*configure)(void *userdata, wsy_str key, wsy_str value, wsy_error *error);

    /* Optional. All options are in: check them, open files, connect to
     * databases. Failure stops start-up. */
    wsy_status (*start)(void *userdata, wsy_error *error);

    /* Required. Decide on one request by calling the answer_* host functions,
     * then return WSY_OK. Answer with answer_peer (and optionally
     * answer_framing, answer_protocol, answer_header), or with answer_reject.
     * Returning WSY_OK without either refuses the upgrade with 404; returning
     * an error refuses it with 500. */
    wsy_status (*query)(void *userdata, const wsy_request *request, wsy_answer *answer);

    /* Optional. Called once at exit, after the last query returned. */
    void (*cleanup)(void *userdata);
} wsy_backend;

/* ------------------------------------------------------------------------ */
/* Host functions                                                            */

#define WSY_LOG_ERROR 1u
#define WSY_LOG_WARN 2u
#define WSY_LOG_INFO 3u
#define WSY_LOG_DEBUG 4u
#define WSY_LOG_TRACE 5u

/* The table the host passes to the entry. Valid until exit. Functions are
 * only ever appended; check host->size (WSY_HAS_FIELD) before calling one
 * newer than the ABI minor you were built against. */
typedef struct wsy_host_api {
    uint32_t size;      /* sizeof(wsy_host_api) as the host was built */
    uint16_t abi_major; /* the host's WSY_ABI_MAJOR */
    uint16_t abi_minor; /* the host's WSY_ABI_MINOR */

    /* Log a line at level WSY_LOG_*, under the plugin's name, which is the
     * library's file stem (RUST_LOG filters apply:
     * RUST_LOG=websocksy::plugin::backend_example=debug). Any thread. */
    void (*log)(const wsy_plugin *plugin, uint32_t level, wsy_str message);

    /* Register a backend or framing. Only during the entry call. The host
     * copies the descriptor (the first `size` bytes); it may be on the stack.
     * WSY_EVERSION if its ABI version is not supported. */
    wsy_status (*register_backend)(wsy_plugin *plugin, const wsy_backend *backend);
    wsy_status (*register_framing)(wsy_plugin *plugin, const wsy_framing *framing);

    /* Describe why the current call fails. The last message set wins. */
    void (*error_set)(wsy_error *error, wsy_str message);

    /* Answer a query (only during that query call; WSY_ESTATE otherwise).
     * answer_peer: "tcp://host:port", "udp://host:port", "unix:///path",
     *   "unix-dgram:///path" or "mirror://"; IPv6 literals in brackets.
     *   WSY_EINVAL (with a log line) if it does not parse.
     * answer_framing: the framing's name and its config (config.ptr NULL:
     *   none). Default: "auto". WSY_EINVAL for an unknown name.
     * answer_protocol: accept request->protocols[index] (the client's
     *   spelling is echoed). Default: no Sec-WebSocket-Protocol.
     * answer_header: add a header to the 101 response.
     * answer_reject: refuse the upgrade with this HTTP status (400-599) and
     *   a one-line reason sent as the body. */
    wsy_status (*answer_peer)(wsy_answer *answer, wsy_str peer);
    wsy_status (*answer_framing)(wsy_answer *answer, wsy_str name, wsy_str config);
    wsy_status (*answer_protocol)(wsy_answer *answer, size_t index);
    wsy_status (*answer_header)(wsy_answer *answer, wsy_str name, wsy_str value);
    wsy_status (*answer_reject)(wsy_answer *answer, uint16_t status, wsy_str reason);

    /* The value of the first header called `name` (ASCII case-insensitive),
     * or of the cookie called `name` (case-sensitive, from every Cookie
     * header, `a=1; b=2` with or without the space). On success *value views
     * the request's memory; WSY_ERROR with *value = {NULL, 0} if absent. */
    wsy_status (*request_header)(const wsy_request *request, wsy_str name, wsy_str *value);
    wsy_status (*request_cookie)(const wsy_request *request, wsy_str name, wsy_str *value);

    /* ---- 2.2 ----------------------------------------------------------- */
    /* Answer a query (as the answer_* above): on = 1 makes this client a
     * member of the peer's fan-out hub. Every client answered with the same
     * peer and a hub shares ONE connection to it: each message the peer
     * sends (after framing) goes to every member, members' messages go to
     * the peer whole (unless the listener is --read-only), and a member too
     * slow to keep up is closed with 1008 rather than slowing the others.
     * The connection opens with the first member and closes when the last
     * one leaves. Not with a PROXY header (?proxy-protocol=: refused with
     * 502), and ignored for mirror://. on = 0 (the default) gives the client
     * a connection of its own. Present when WSY_HAS_FIELD(host, wsy_host_api,
     * answer_hub); a plugin that may run on a 2.0 or 2.1 host checks that
     * before calling it. */
    wsy_status (*answer_hub)(wsy_answer *answer, uint32_t on);
} wsy_host_api;

/* The entry every plugin library exports under the name WSY_ENTRY_SYMBOL:
 *
 *     WSY_EXPORT wsy_status websocksy_plugin_v2(wsy_plugin *plugin,
 *                                               const wsy_host_api *host,
 *                                               wsy_error *error);
 *
 * Check host->abi_major == WSY_ABI_MAJOR, register, return WSY_OK. Any
 * other return (with error_set) stops start-up. */
typedef wsy_status (*wsy_entry_fn)(wsy_plugin *plugin, const wsy_host_api *host, wsy_error *error);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* WEBSOCKSY_H */
