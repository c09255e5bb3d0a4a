/*
 * fuzz.h - what every libFuzzer harness in tests/fuzz/ shares.
 *
 * A harness is one file that defines LLVMFuzzerTestOneInput() (and, if it
 * needs a set-up step, LLVMFuzzerInitialize()); tests/fuzz/meson.build
 * builds it, tests/fuzz/run.sh runs it on a copy of tests/fuzz/corpus/<name>/.
 *
 * Sanitizers catch memory errors; FUZZ_CHECK() catches the rest: a
 * property that must hold for every input (a reply line is whole, a decoded
 * record re-encodes to the same bytes).  A failed check aborts, so libFuzzer
 * saves the input that broke it, like any other crash.
 */
#ifndef PIGEON_FUZZ_H
#define PIGEON_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/*
 * FUZZ_NO_COVERAGE - for a harness's own checking loops: their branches say
 * nothing about the code under test, and tracing every comparison in them
 * would only slow the fuzzer down and steer it by the harness.
 */
#define FUZZ_NO_COVERAGE __attribute__((no_sanitize("coverage")))

/* FUZZ_CHECK - abort with a message when an invariant does not hold */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
