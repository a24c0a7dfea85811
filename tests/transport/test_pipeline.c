/* pipeline.* — pipeline files: parsing, variables, overrides, and errors that name the line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slidestream/error.h"
#include "slidestream/pipeline.h"

#include "../check.h"

static const char *write_conf(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "test_pipeline_%d.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loading `text` must fail with a message containing `expect`. */
static void expect_error(const char *text, int nov, char **ov, const char *expect)
{
    ss_error_clear();
    ss_pipeline_t *p = ss_pipeline_load(write_conf(text), nov, ov);
    CHECK(p == NULL, "accepted: %s", text);
    CHECK(strstr(ss_error_buffer(), expect) != NULL, "error '%s' lacks '%s'", ss_error_buffer(),
          expect);
    ss_pipeline_destroy(&p);
}

int main(void)
{
    const char *good = "# demo\nname = t1\nset a = 1\nset b = x${a}y\n"
                       "pre = synth slide --out \"${rundir}/my slide.tiff\"\n"
                       "stage tiler = tiler --out @ipc://${rundir}/t ${b}\n"
                       "stage crop x3 = cell-cropper\nsink count = count --in ${b}\nstage enc x${a} = encoder\n";
    char *ov[] = {"a=7", "rundir=/tmp/r"};
    ss_pipeline_t *p = ss_pipeline_load(write_conf(good), 2, ov);
    CHECK(p != NULL, "good file refused: %s", ss_error_buffer());
    if (p) {
        CHECK(!strcmp(p->name, "t1"), "name");
        CHECK(p->nstages == 4 && p->stages[1].replicas == 3 && p->stages[2].sink, "stages");
        CHECK(ss_pipeline_replicas(p, &p->stages[3]) == 7, "replicas from a variable");
        char *w[16];
        int n = ss_pipeline_words(p, p->stages[0].cmd, w, 16);
        CHECK(n == 4 && !strcmp(w[2], "@ipc:///tmp/r/t") && !strcmp(w[3], "x7y"),
              "expansion: n=%d", n);
        ss_pipeline_free_words(w, n > 0 ? n : 0);
        n = ss_pipeline_words(p, p->pre[0], w, 16);
        CHECK(n == 4 && !strcmp(w[3], "/tmp/r/my slide.tiff"), "quoted word: n=%d '%s'", n,
              n == 4 ? w[3] : "");
        ss_pipeline_free_words(w, n > 0 ? n : 0);
        n = ss_pipeline_words(p, "x ${nope}", w, 16);
        CHECK(n == -1 && strstr(ss_error_buffer(), "${nope}"), "undefined variable");
        ss_error_clear();
        n = ss_pipeline_words(p, "x \"open", w, 16);
        CHECK(n == -1 && strstr(ss_error_buffer(), "quote"), "unbalanced quote");
        ss_error_clear();
        ss_pipeline_destroy(&p);
        CHECK(p == NULL, "destroy clears");
    }
    char *bad_ov[] = {"nosuch=1"};
    expect_error(good, 1, bad_ov, "no variable 'nosuch'");
    char *bad_ov2[] = {"novalue"};
    expect_error(good, 1, bad_ov2, "key=value");
    expect_error("stage a = x\n", 0, NULL, "no sink");
    expect_error("sink a = x\nstage a = y\n", 0, NULL, "defined twice");
    expect_error("sink a x0 = x\n", 0, NULL, "replicas");
    expect_error("sink a = x\nfoo = 1\n", 0, NULL, ":2: unknown entry");
    expect_error("sink a = x\njunk\n", 0, NULL, ":2: expected");
    expect_error("# nothing\n", 0, NULL, "no stages");
    ss_error_clear();
    CHECK(ss_pipeline_load("/nonexistent/p.conf", 0, NULL) == NULL &&
              strstr(ss_error_buffer(), "/nonexistent/p.conf"),
          "missing file not named");
    /* A loop of variables is caught when expanding. */
    p = ss_pipeline_load(write_conf("set a = ${b}\nset b = ${a}\nsink s = x ${a}\n"), 0, NULL);
    if (p) {
        char *w[4];
        ss_error_clear();
        CHECK(ss_pipeline_words(p, p->stages[0].cmd, w, 4) == -1 &&
                  strstr(ss_error_buffer(), "loop"),
              "variable loop: %s", ss_error_buffer());
        ss_pipeline_destroy(&p);
    }
    unlink(write_conf(""));
    printf("pipeline: %s\n", check_failures ? "FAILED" : "ok");
    return check_failures ? 1 : 0;
}
