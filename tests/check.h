/* slidestream — tiny assertion helpers shared by the test programs: a failed check prints where
 * and why and counts in check_failures; main returns check_exit() (or tests check_failures) so
 * the exit code carries the verdict. */
#ifndef SS_TESTS_CHECK_H
#define SS_TESTS_CHECK_H

#include <math.h>
#include <stdio.h>

static int check_failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: FAIL %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

/* |got - want| <= atol + rtol |want| */
#define CHECK_NEAR(got, want, atol, rtol)                                                          \
    do {                                                                                           \
        double g_ = (got), w_ = (want);                                                            \
        CHECK(fabs(g_ - w_) <= (atol) + (rtol)*fabs(w_), "got %.9g want %.9g", g_, w_);            \
    } while (0)

static inline int check_exit(const char *name)
{
    if (check_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, check_failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

#endif
