/* nosym.c - a shared object that is not a websocksy plugin (no entry symbol). */
int websocksy_test_not_a_plugin(void);

int websocksy_test_not_a_plugin(void) {
    return 42;
}
