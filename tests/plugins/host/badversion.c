/*
 * badversion.c - a framing descriptor claiming ABI TEST_MAJOR.TEST_MINOR
 * (build with -DTEST_MAJOR=1 -DTEST_MINOR=0, or 2 and 99): the host must
 * refuse it with WSY_EVERSION and a start-up error naming the file.
 */
#include <string.h>

#include <websocksy.h>

#ifndef TEST_MAJOR
#define TEST_MAJOR 1
#endif
#ifndef TEST_MINOR
#define TEST_MINOR 0
#endif

static int64_t frame(void *userdata, void *state, const uint8_t *data, size_t length, size_t last_read,
                     wsy_opcode *opcode) {
    (void)userdata;
    (void)state;
    (void)data;
    (void)last_read;
    (void)opcode;
    return (int64_t)length;
}

WSY_EXPORT wsy_status websocksy_plugin_v2(wsy_plugin *plugin, const wsy_host_api *h, wsy_error *error) {
    wsy_framing f;
    (void)error;
    memset(&f, 0, sizeof f);
    f.size = sizeof f;
    f.abi_major = TEST_MAJOR;
    f.abi_minor = TEST_MINOR;
    f.name = "versioned";
    f.frame = frame;
    return h->register_framing(plugin, &f);
}
