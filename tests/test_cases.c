/*
 * Tests of tools/gradcheck and its evaluator (tools/case.c).
 *
 * The tool runs over every case file: tests/cases/ (written by PyTorch
 * through the committed tools/cases_*.py scripts) and ../shared/cases/
 * when it is there, and over every registered op with --all-ops. The
 * evaluator's own tests write small cases to a temporary directory:
 * hand-worked values and gradients, clean errors of invalid input, and
 * malformed files, which must give a message and a non-zero exit, never a
 * crash. A test-local op with a deliberately wrong backward checks that the
 * checker itself catches what it is for, naming the worst element.
 *
 * The tool's path is in GRADCHECK (meson.build sets it); the working
 * directory is the repository root.
 */
#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/engine.h"
#include "../tools/case.h"
#include "check.h"

/* ------------------------------------------------------ running the tool */

typedef struct run_out {
    bool exited; /* normally (not killed by a signal) */
    int status;  /* exit status when exited */
    char *out, *err;
} run_out;

static char *slurp_fd(int fd)
{
    off_t n = lseek(fd, 0, SEEK_END);
    cr_assert(n >= 0);
    char *s = malloc((size_t)n + 1);
    cr_assert(s);
    cr_assert_eq(pread(fd, s, (size_t)n, 0), n);
    s[n] = '\0';
    close(fd);
    return s;
}

static int temp_fd(void)
{
    char path[] = "/tmp/yoke-gradcheck-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp failed");
    unlink(path);
    return fd;
}

/* Runs the tool with args (NULL-terminated), capturing its output. */
static run_out run_tool(const char *const *args)
{
    const char *tool = getenv("GRADCHECK");
    cr_assert(tool && tool[0], "GRADCHECK is not set: run the tests with "
              "meson test, which points it at the built tool");
    int n = 0;
    while (args[n])
        n++;
    char **argv = calloc((size_t)n + 2, sizeof *argv);
    cr_assert(argv);
    argv[0] = (char *)tool;
    for (int i = 0; i < n; i++)
        argv[i + 1] = (char *)args[i];
    int fo = temp_fd(), fe = temp_fd();
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork failed");
    if (pid == 0) {
        dup2(fo, 1);
        dup2(fe, 2);
        execv(tool, argv);
        _exit(127);
    }
    int ws = 0;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    free(argv);
    run_out r = {WIFEXITED(ws), WIFEXITED(ws) ? WEXITSTATUS(ws) : -1,
                 slurp_fd(fo), slurp_fd(fe)};
    cr_assert(r.exited, "gradcheck was killed by signal %d (a crash); "
              "stderr:\n%s", WIFSIGNALED(ws) ? WTERMSIG(ws) : 0, r.err);
    /* Under -Db_sanitize a report exits 1, which looks like a refusal. */
    cr_assert(!strstr(r.err, "Sanitizer") && !strstr(r.err, "runtime error"),
              "gradcheck %s: sanitizer report:\n%s", args[0] ? args[0] : "",
              r.err);
    return r;
}

static void run_free(run_out *r)
{
    free(r->out);
    free(r->err);
}

/* The end of a long output, for assertion messages. */
static const char *tail(const char *s)
{
    size_t n = strlen(s);
    return n > 6000 ? s + n - 6000 : s;
}

/* ------------------------------------------------------- temporary cases */

static char tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/yoke-cases-XXXXXX");
    cr_assert(mkdtemp(tmpdir), "mkdtemp failed");
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(tmpdir);
}

TestSuite(eval, .init = make_tmpdir, .fini = remove_tmpdir);
TestSuite(check, .init = make_tmpdir, .fini = remove_tmpdir);
TestSuite(cli);
TestSuite(cases);
TestSuite(checker);

/* Writes text to tmpdir/name; returns the path (static until next call). */
static const char *write_case(const char *name, const char *text)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
    return path;
}

/* ------------------------------------------------------ every case file */

/* Runs the tool over pattern's files (optimizer cases included). */
static void check_all(const char *pattern)
{
    glob_t gl;
    int g = glob(pattern, 0, NULL, &gl);
    if (g == GLOB_NOMATCH)
        cr_skip_test("no case files match %s", pattern);
    cr_assert_eq(g, 0, "glob %s failed", pattern);
    const char **args = calloc(gl.gl_pathc + 1, sizeof *args);
    cr_assert(args);
    for (size_t i = 0; i < gl.gl_pathc; i++)
        args[i] = gl.gl_pathv[i];
    run_out r = run_tool(args);
    cr_log_info("%s: %zu cases checked", pattern, gl.gl_pathc);
    cr_expect_eq(r.status, 0, "gradcheck failed over %s:\n%s%s", pattern,
                 tail(r.out), r.err);
    run_free(&r);
    free(args);
    globfree(&gl);
}

Test(cases, repository_cases)
{
    check_all("tests/cases/*.json");
}

Test(cases, shared_cases)
{
    struct stat st;
    if (stat("../shared/cases", &st) != 0)
        cr_skip_test("../shared/cases is not there (it is in CI)");
    check_all("../shared/cases/*.json");
}

Test(cases, all_ops)
{
    run_out r = run_tool((const char *[]){"--all-ops", NULL});
    cr_expect_eq(r.status, 0, "gradcheck --all-ops failed:\n%s%s",
                 tail(r.out), r.err);
    run_free(&r);
}

/* The JSON report lists every op of the registry, each with generated
 * cases, and the same seed gives the same report. */
Test(cases, all_ops_json_covers_the_registry_and_is_reproducible)
{
    run_out a = run_tool((const char *[]){"--all-ops", "--json", "--seed",
                                          "7", NULL});
    run_out b = run_tool((const char *[]){"--all-ops", "--json", "--seed",
                                          "7", NULL});
    run_out c = run_tool((const char *[]){"--all-ops", "--json", "--seed",
                                          "8", NULL});
    cr_assert_str_eq(a.out, b.out, "two runs with --seed 7 differ");
    cr_assert(strcmp(a.out, c.out) != 0, "--seed 7 and --seed 8 gave the "
              "same cases");
    cJSON *rep = cJSON_Parse(a.out);
    cr_assert(rep, "--json printed no JSON:\n%s", tail(a.out));
    const cJSON *ops = cJSON_GetObjectItem(rep, "ops");
    cr_assert_eq(cJSON_GetArraySize(ops), yk_op_count(),
                 "the report has %d ops, the registry %d",
                 cJSON_GetArraySize(ops), yk_op_count());
    for (int i = 0; i < yk_op_count(); i++) {
        const cJSON *o = cJSON_GetArrayItem(ops, i);
        const char *name = cJSON_GetObjectItem(o, "op")->valuestring;
        cr_expect_str_eq(name, yk_op_at(i)->name);
        cr_expect_gt(cJSON_GetObjectItem(o, "cases")->valuedouble, 0,
                     "op %s: no generated case", name);
    }
    cr_expect_eq(cJSON_GetObjectItem(rep, "failed")->valuedouble == 0,
                 a.status == 0, "exit status %d disagrees with the report",
                 a.status);
    cJSON_Delete(rep);
    run_free(&a);
    run_free(&b);
    run_free(&c);
}

/* ---------------------------------------------------------------- --eval */

/* y = relu(x) with x = [-1.5, 2, 0.5]: [0, 2, 0.5]; t = y + c with c = 1:
 * [1, 3, 1.5]. Seed t with [1, 2, 3]: dL/dy = [1, 2, 3], and relu passes
 * it where x > 0: dL/dx = [0, 2, 3]. u requires grad but no seeded node
 * reads it: zeros. c is a constant: no gradient printed. */
static const char hand_case[] =
    "{\"format\": \"yoke-case/1\", \"name\": \"hand\", \"tensors\": {"
    " \"x\": {\"dtype\": \"f64\", \"shape\": [3], \"data\": [-1.5, 2, 0.5],"
    "        \"requires_grad\": true},"
    " \"u\": {\"dtype\": \"f64\", \"shape\": [2], \"data\": [1, 2],"
    "        \"requires_grad\": true},"
    " \"c\": {\"dtype\": \"f64\", \"shape\": [], \"data\": [1]}},"
    " \"nodes\": [{\"name\": \"y\", \"op\": \"relu\", \"inputs\": {\"input\": \"x\"}},"
    "  {\"name\": \"t\", \"op\": \"add\", \"inputs\": {\"input\": \"y\", \"other\": \"c\"}}],"
    " \"seeds\": {\"t\": {\"dtype\": \"f64\", \"shape\": [3], \"data\": [1, 2, 3]}}}";

static void expect_data(const cJSON *t, const char *dtype, const double *want,
                        int n)
{
    cr_assert(t, "tensor missing");
    cr_expect_str_eq(cJSON_GetObjectItem(t, "dtype")->valuestring, dtype);
    const cJSON *d = cJSON_GetObjectItem(t, "data");
    cr_assert_eq(cJSON_GetArraySize(d), n);
    for (int i = 0; i < n; i++)
        cr_expect_eq(cJSON_GetArrayItem(d, i)->valuedouble, want[i],
                     "element %d: %g, want %g", i,
                     cJSON_GetArrayItem(d, i)->valuedouble, want[i]);
}

Test(eval, prints_every_value_and_gradient)
{
    const char *path = write_case("hand.json", hand_case);
    run_out r = run_tool((const char *[]){"--eval", path, NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    cJSON *res = cJSON_Parse(r.out);
    cr_assert(res, "not JSON:\n%s", r.out);
    cr_expect_str_eq(cJSON_GetObjectItem(res, "name")->valuestring, "hand");
    const cJSON *v = cJSON_GetObjectItem(res, "values");
    const cJSON *g = cJSON_GetObjectItem(res, "grads");
    expect_data(cJSON_GetObjectItem(v, "y"), "f64", VALS(0, 2, 0.5), 3);
    expect_data(cJSON_GetObjectItem(v, "t"), "f64", VALS(1, 3, 1.5), 3);
    expect_data(cJSON_GetObjectItem(g, "x"), "f64", VALS(0, 2, 3), 3);
    expect_data(cJSON_GetObjectItem(g, "u"), "f64", VALS(0, 0), 2);
    cr_expect_null(cJSON_GetObjectItem(g, "c"), "a constant has no gradient");
    cJSON_Delete(res);
    run_free(&r);
}

/* Numbers are printed so that they read back exactly. */
Test(eval, numbers_round_trip)
{
    const char *path = write_case("rt.json",
        "{\"format\": \"yoke-case/1\", \"name\": \"rt\", \"tensors\": {"
        " \"x\": {\"dtype\": \"f64\", \"shape\": [3], \"data\": "
        "[0.1, 1e-300, 3.141592653589793]},"
        " \"h\": {\"dtype\": \"f32\", \"shape\": [2], \"data\": [0.1, 3e38]}},"
        " \"nodes\": [{\"name\": \"y\", \"op\": \"cat\", \"inputs\": "
        "{\"tensors\": [\"x\", \"x\"]}},"
        " {\"name\": \"z\", \"op\": \"cat\", \"inputs\": {\"tensors\": [\"h\"]}}]}");
    run_out r = run_tool((const char *[]){"--eval", path, NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    cJSON *res = cJSON_Parse(r.out);
    const cJSON *v = cJSON_GetObjectItem(res, "values");
    expect_data(cJSON_GetObjectItem(v, "y"), "f64",
                VALS(0.1, 1e-300, 3.141592653589793, 0.1, 1e-300,
                     3.141592653589793), 6);
    const cJSON *z = cJSON_GetObjectItem(cJSON_GetObjectItem(v, "z"), "data");
    cr_expect_eq((float)cJSON_GetArrayItem(z, 0)->valuedouble, 0.1f);
    cr_expect_eq((float)cJSON_GetArrayItem(z, 1)->valuedouble, 3e38f);
    cJSON_Delete(res);
    run_free(&r);
}

/* Invalid input fails cleanly: the error object, exit 0. */
Test(eval, invalid_input_gives_the_error_object)
{
    const char *path = write_case("oob.json",
        "{\"format\": \"yoke-case/1\", \"name\": \"oob\", \"tensors\": {"
        " \"W\": {\"dtype\": \"f64\", \"shape\": [2, 2], \"data\": [1, 2, 3, 4],"
        "  \"requires_grad\": true},"
        " \"i\": {\"dtype\": \"i64\", \"shape\": [2], \"data\": [0, 7]}},"
        " \"nodes\": [{\"name\": \"E\", \"op\": \"embedding\", \"inputs\": "
        "{\"input\": \"i\", \"weight\": \"W\"}}],"
        " \"expected\": {\"error\": \"index_out_of_range\"}}");
    run_out r = run_tool((const char *[]){"--eval", path, NULL});
    cr_assert_eq(r.status, 0, "a clean error exits 0: %s", r.err);
    cJSON *res = cJSON_Parse(r.out);
    cr_assert(res, "not JSON:\n%s", r.out);
    cr_expect_str_eq(cJSON_GetObjectItem(res, "name")->valuestring, "oob");
    cr_expect_str_eq(cJSON_GetObjectItem(res, "error")->valuestring,
                     "index_out_of_range");
    const char *msg = cJSON_GetObjectItem(res, "message")->valuestring;
    cr_expect(strstr(msg, "\"E\"") && strstr(msg, "7"),
              "the message names the node and the index: %s", msg);
    cr_expect_null(cJSON_GetObjectItem(res, "values"));
    cJSON_Delete(res);
    run_free(&r);
}

/* A malformed file: message on stderr naming the problem, exit 1. */
static void expect_malformed(const char *text, const char *part)
{
    const char *path = write_case("bad.json", text);
    run_out r = run_tool((const char *[]){"--eval", path, NULL});
    cr_expect_eq(r.status, 1, "exit %d for a malformed file (%s)", r.status,
                 part);
    cr_expect(strstr(r.err, part) != NULL, "stderr \"%s\" does not mention "
              "\"%s\"", r.err, part);
    cr_expect(strstr(r.err, "bad.json") != NULL, "stderr does not name the "
              "file: %s", r.err);
    cr_expect_str_eq(r.out, "", "nothing on stdout for a malformed file");
    run_free(&r);
}

#define HEAD "{\"format\": \"yoke-case/1\", \"name\": \"m\", "
#define X3 "\"x\": {\"dtype\": \"f64\", \"shape\": [3], \"data\": [1, 2, 3], " \
           "\"requires_grad\": true}"
#define RELU "{\"name\": \"y\", \"op\": \"relu\", \"inputs\": {\"input\": \"x\"}}"

Test(eval, malformed_files_are_refused_with_a_message)
{
    expect_malformed(HEAD "\"tensors\": {" X3 "}, \"nodes\": [" RELU,
                     "not valid JSON");
    expect_malformed("", "not valid JSON");
    expect_malformed(HEAD "\"tensors\": {" X3 "}, \"nodes\": [" RELU "]} x",
                     "text after the case object");
    expect_malformed("[1, 2]", "a case is a JSON object");
    expect_malformed(HEAD "\"tensors\": {" X3 "}, \"nodes\": [{\"name\": "
                     "\"y\", \"op\": \"frobnicate\", \"inputs\": {}}]}",
                     "unknown op \"frobnicate\"");
    expect_malformed(HEAD "\"tensors\": {" X3 "}, \"nodes\": [{\"name\": "
                     "\"y\", \"op\": \"relu\", \"inputs\": {\"input\": \"x\"},"
                     " \"attrs\": {\"dim\": 0}}]}",
                     "op \"relu\" has no attribute \"dim\"");
    expect_malformed(HEAD "\"tensors\": {\"x\": {\"dtype\": \"f64\", \"shape\":"
                     " [2, 2], \"data\": [1, 2, 3]}}, \"nodes\": []}",
                     "has 3 numbers, shape [2, 2] needs 4");
    expect_malformed(HEAD "\"tensors\": {\"x\": {\"dtype\": \"f16\", \"shape\":"
                     " [1], \"data\": [1]}}, \"nodes\": []}",
                     "unknown dtype \"f16\"");
    expect_malformed(HEAD "\"tensors\": {" X3 "}, \"nodes\": [{\"name\": "
                     "\"y\", \"op\": \"relu\", \"inputs\": {\"input\": \"z\"}}]}",
                     "\"z\" is not a tensor or an earlier node");
    expect_malformed(HEAD "\"tensors\": {" X3 "}, \"nodes\": [{\"name\": "
                     "\"y\", \"op\": \"relu\", \"inputs\": {\"input\": \"y\"}}]}",
                     "\"y\" is not a tensor or an earlier node");
    expect_malformed(HEAD "\"tensors\": {" X3 "}, \"nodes\": [{\"name\": "
                     "\"y\", \"op\": \"relu\", \"inputs\": {}}]}",
                     "inputs.input: missing");
    expect_malformed(HEAD "\"tensors\": {" X3 "}, \"nodes\": [{\"name\": "
                     "\"y\", \"op\": \"relu\", \"inputs\": {\"input\": \"x\", "
                     "\"other\": \"x\"}}]}", "has no input \"other\"");
    expect_malformed(HEAD "\"tensors\": {\"x\": {\"dtype\": \"f64\", \"shape\":"
                     " [100000000000, 100000000000], \"data\": []}}, "
                     "\"nodes\": []}", "shape[0]: must be an integer in");
    expect_malformed(HEAD "\"tensors\": {\"x\": {\"dtype\": \"f64\", \"shape\":"
                     " [-2], \"data\": [1, 2]}}, \"nodes\": []}",
                     "shape[0]: must be an integer in");
    expect_malformed(HEAD "\"tensors\": {\"x\": {\"dtype\": \"f64\", \"shape\":"
                     " [1, 1, 1, 1, 1, 1, 1, 1, 1], \"data\": [1]}}, "
                     "\"nodes\": []}", "has 9 dims, at most 8");
    expect_malformed(HEAD "\"tensors\": {\"x\": {\"dtype\": \"f64\", \"shape\":"
                     " [1.5], \"data\": [1]}}, \"nodes\": []}",
                     "shape[0]: must be an integer");
    expect_malformed(HEAD "\"tensors\": {\"x\": {\"dtype\": \"f64\", \"shape\":"
                     " [3], \"data\": \"123\"}}, \"nodes\": []}",
                     "data: must be a list of numbers, got a string");
    expect_malformed(HEAD "\"tensors\": {\"x\": {\"dtype\": \"f64\", \"shape\":"
                     " [2], \"data\": [1, \"2\"]}}, \"nodes\": []}",
                     "data[1]: must be a number, got a string");
    expect_malformed(HEAD "\"tensors\": {\"i\": {\"dtype\": \"i64\", \"shape\":"
                     " [2], \"data\": [1, 2.5]}}, \"nodes\": []}",
                     "data[1]: an i64 tensor needs whole numbers");
    expect_malformed(HEAD "\"tensors\": {\"i\": {\"dtype\": \"i64\", \"shape\":"
                     " [1], \"data\": [1], \"requires_grad\": true}}, "
                     "\"nodes\": []}", "an i64 tensor cannot require grad");
    expect_malformed(HEAD "\"tensors\": [], \"nodes\": []}",
                     "tensors: must be an object");
    expect_malformed(HEAD "\"tensors\": {" X3 "}, \"nodes\": {}}",
                     "nodes: must be a list");
    expect_malformed(HEAD "\"tensors\": {" X3 "}, \"nodes\": [{\"name\": "
                     "\"y\", \"op\": \"relu\", \"inputs\": \"x\"}]}",
                     "inputs: must be an object");
    expect_malformed(HEAD "\"tensors\": {" X3 "}, \"nodes\": [{\"name\": "
                     "\"y\", \"op\": \"sum\", \"inputs\": {\"input\": \"x\"}, "
                     "\"attrs\": {\"keepdim\": 1}}]}",
                     "attrs.keepdim: must be true or false");
    expect_malformed(HEAD "\"tensors\": {" X3 "}, \"nodes\": [{\"name\": "
                     "\"y\", \"op\": \"softmax\", \"inputs\": {\"input\": "
                     "\"x\"}}]}", "attrs.dim: missing");
    expect_malformed(HEAD "\"tensors\": {" X3 "}, \"nodes\": [{\"name\": "
                     "\"y\", \"op\": \"cat\", \"inputs\": {\"tensors\": "
                     "\"x\"}}]}", "must be a list of names");
    expect_malformed(HEAD "\"tensors\": {" X3 ", " X3 "}, \"nodes\": []}",
                     "given twice");
    expect_malformed(HEAD "\"tensors\": {" X3 "}, \"nodes\": [" RELU ", "
                     RELU "]}", "already used");
    expect_malformed(HEAD "\"tensors\": {" X3 "}, \"nodes\": [" RELU "], "
                     "\"seeds\": {\"q\": {\"dtype\": \"f64\", \"shape\": [3], "
                     "\"data\": [1, 1, 1]}}}", "there is no node \"q\"");
    expect_malformed(HEAD "\"tensors\": {" X3 "}, \"nodes\": [" RELU "], "
                     "\"expected\": {\"error\": \"oops\"}}",
                     "must be an error category");
    expect_malformed(HEAD "\"tensors\": {" X3 "}, \"nodes\": [" RELU "], "
                     "\"colour\": 1}", "unknown key \"colour\"");
    expect_malformed("{\"format\": \"yoke-case/2\", \"name\": \"m\", "
                     "\"tensors\": {}, \"nodes\": []}",
                     "must be \"yoke-case/1\"");
}

Test(eval, unreadable_file)
{
    run_out r = run_tool((const char *[]){"--eval", "/nonexistent/x.json",
                                          NULL});
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "cannot open") != NULL, "%s", r.err);
    run_free(&r);
}

/* ------------------------------------------------------ optimizer steps */

/*
 * Hand-worked optimizer case. y = x * c, seeded with [1, 1]: dL/dx = c.
 * c's own value [100, 100] is never used: feeds[0] replaces it in step 1.
 * sgd lr 0.5, momentum 0.9 on x = [1, 2]:
 *   step 1, c = [3, -1]: b = g = [3, -1]; x = [1, 2] - 0.5 b = [-0.5, 2.5]
 *   step 2, c = [2, 4]:  b = 0.9 [3, -1] + [2, 4] = [4.7, 3.1];
 *                        x = [-0.5, 2.5] - 0.5 b = [-2.85, 0.95]
 * Step 1's values: y = [1*3, 2*-1] = [3, -2]; gradient of x: [3, -1].
 * u is trained by adamw (weight_decay 0.01 by default) but no node reads
 * it: no gradient, skipped, so not decayed: stays [5]. v requires grad but
 * is in no group: not trained, not in "params", gradient zeros.
 */
#define OPT_TENSORS                                                           \
    "\"tensors\": {"                                                          \
    " \"x\": {\"dtype\": \"f64\", \"shape\": [2], \"data\": [1, 2], "         \
    "\"requires_grad\": true},"                                               \
    " \"u\": {\"dtype\": \"f64\", \"shape\": [1], \"data\": [5], "            \
    "\"requires_grad\": true},"                                               \
    " \"v\": {\"dtype\": \"f64\", \"shape\": [1], \"data\": [7], "            \
    "\"requires_grad\": true},"                                               \
    " \"c\": {\"dtype\": \"f64\", \"shape\": [2], \"data\": [100, 100]}}, "   \
    "\"nodes\": [{\"name\": \"y\", \"op\": \"mul\", \"inputs\": "             \
    "{\"input\": \"x\", \"other\": \"c\"}}], "                                \
    "\"seeds\": {\"y\": {\"dtype\": \"f64\", \"shape\": [2], "               \
    "\"data\": [1, 1]}}, "
#define OPT_FEEDS                                                             \
    "\"feeds\": [{\"c\": {\"dtype\": \"f64\", \"shape\": [2], \"data\": "    \
    "[3, -1]}}, {\"c\": {\"dtype\": \"f64\", \"shape\": [2], \"data\": "     \
    "[2, 4]}}]"
#define OPT_GROUPS                                                            \
    "\"groups\": [{\"name\": \"sgd\", \"leaves\": [\"x\"], \"params\": "     \
    "{\"lr\": 0.5, \"momentum\": 0.9}}, {\"name\": \"adamw\", \"leaves\": "  \
    "[\"u\"]}]"
#define OPT_HAND                                                              \
    HEAD OPT_TENSORS "\"optimizer\": {\"steps\": 2, " OPT_GROUPS ", "        \
    OPT_FEEDS "}"

static void expect_json_close(const cJSON *t, const double *want, int n)
{
    cr_assert(t, "tensor missing");
    const cJSON *d = cJSON_GetObjectItem(t, "data");
    cr_assert_eq(cJSON_GetArraySize(d), n);
    for (int i = 0; i < n; i++) {
        double got = cJSON_GetArrayItem(d, i)->valuedouble;
        cr_expect(fabs(got - want[i]) <= 1e-12 * (1 + fabs(want[i])),
                  "element %d: %.17g, want %.17g", i, got, want[i]);
    }
}

Test(eval, optimizer_steps_print_the_first_step_and_the_trained_params)
{
    const char *path = write_case("opt.json", OPT_HAND "}");
    run_out r = run_tool((const char *[]){"--eval", path, NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    cJSON *res = cJSON_Parse(r.out);
    cr_assert(res, "not JSON:\n%s", r.out);
    const cJSON *v = cJSON_GetObjectItem(res, "values");
    const cJSON *g = cJSON_GetObjectItem(res, "grads");
    const cJSON *p = cJSON_GetObjectItem(res, "params");
    expect_data(cJSON_GetObjectItem(v, "y"), "f64", VALS(3, -2), 2);
    expect_data(cJSON_GetObjectItem(g, "x"), "f64", VALS(3, -1), 2);
    expect_data(cJSON_GetObjectItem(g, "u"), "f64", VALS(0), 1);
    expect_data(cJSON_GetObjectItem(g, "v"), "f64", VALS(0), 1);
    cr_assert(p, "no \"params\" in:\n%s", r.out);
    expect_json_close(cJSON_GetObjectItem(p, "x"), VALS(-2.85, 0.95), 2);
    expect_data(cJSON_GetObjectItem(p, "u"), "f64", VALS(5), 1);
    cr_expect_null(cJSON_GetObjectItem(p, "v"), "v is in no group");
    cr_expect_null(cJSON_GetObjectItem(p, "c"), "c is a constant");
    cJSON_Delete(res);
    run_free(&r);
}

/* No optimizer: no "params". */
Test(eval, no_params_without_an_optimizer)
{
    const char *path = write_case("hand.json", hand_case);
    run_out r = run_tool((const char *[]){"--eval", path, NULL});
    cJSON *res = cJSON_Parse(r.out);
    cr_assert(res, "not JSON:\n%s", r.out);
    cr_expect_null(cJSON_GetObjectItem(res, "params"));
    cJSON_Delete(res);
    run_free(&r);
}

/*
 * Feeds may change a fed tensor's shape where no seeded node's shape
 * changes. W (3 x 2, all 1) is read by embedding E, s = sum(E) is seeded
 * with 1: each lookup of row r adds [1, 1] to its gradient. sgd lr 1:
 *   step 1, idx = [0, 1]:    rows 0 and 1 lose 1
 *   step 2, idx = [2, 2, 0]: row 2 loses 2, row 0 loses 1
 * W after: [[-1, -1], [0, 0], [-1, -1]]. Step 1: s = 4, E is 2 x 2.
 */
Test(eval, feeds_may_change_shapes_that_no_seed_sees)
{
    const char *path = write_case("shape.json", HEAD "\"tensors\": {"
        " \"W\": {\"dtype\": \"f64\", \"shape\": [3, 2], \"data\": "
        "[1, 1, 1, 1, 1, 1], \"requires_grad\": true},"
        " \"idx\": {\"dtype\": \"i64\", \"shape\": [1], \"data\": [2]}},"
        " \"nodes\": [{\"name\": \"E\", \"op\": \"embedding\", \"inputs\": "
        "{\"input\": \"idx\", \"weight\": \"W\"}, \"attrs\": {\"sparse\": "
        "true}}, {\"name\": \"s\", \"op\": \"sum\", \"inputs\": {\"input\": "
        "\"E\"}}],"
        " \"seeds\": {\"s\": {\"dtype\": \"f64\", \"shape\": [], \"data\": [1]}},"
        " \"optimizer\": {\"steps\": 2, \"groups\": [{\"name\": \"sgd\", "
        "\"leaves\": [\"W\"], \"params\": {\"lr\": 1}}], \"feeds\": ["
        "{\"idx\": {\"dtype\": \"i64\", \"shape\": [2], \"data\": [0, 1]}},"
        "{\"idx\": {\"dtype\": \"i64\", \"shape\": [3], \"data\": [2, 2, 0]}}]}}");
    run_out r = run_tool((const char *[]){"--eval", path, NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    cJSON *res = cJSON_Parse(r.out);
    cr_assert(res, "not JSON:\n%s", r.out);
    cr_assert_null(cJSON_GetObjectItem(res, "error"), "%s", r.out);
    const cJSON *v = cJSON_GetObjectItem(res, "values");
    expect_data(cJSON_GetObjectItem(v, "s"), "f64", VALS(4), 1);
    expect_data(cJSON_GetObjectItem(v, "E"), "f64", VALS(1, 1, 1, 1), 4);
    expect_data(cJSON_GetObjectItem(cJSON_GetObjectItem(res, "grads"), "W"),
                "f64", VALS(1, 1, 1, 1, 0, 0), 6);
    expect_data(cJSON_GetObjectItem(cJSON_GetObjectItem(res, "params"), "W"),
                "f64", VALS(-1, -1, 0, 0, -1, -1), 6);
    cJSON_Delete(res);
    run_free(&r);
}

/* An optimizer block that evaluates to the error object: exit 0, the
 * category, and a message holding every part (the culprit). */
static void expect_eval_error(const char *text, const char *category,
                              const char *part1, const char *part2)
{
    const char *path = write_case("inv.json", text);
    run_out r = run_tool((const char *[]){"--eval", path, NULL});
    cr_expect_eq(r.status, 0, "a clean error exits 0 (%s): %s", part1, r.err);
    cJSON *res = cJSON_Parse(r.out);
    cr_assert(res, "not JSON (%s):\n%s%s", part1, r.out, r.err);
    const cJSON *e = cJSON_GetObjectItem(res, "error");
    cr_assert(cJSON_IsString(e), "no error for %s:\n%s", part1, r.out);
    cr_expect_str_eq(e->valuestring, category, "%s", part1);
    const char *msg = cJSON_GetObjectItem(res, "message")->valuestring;
    cr_expect(strstr(msg, part1) != NULL, "message \"%s\" does not mention "
              "%s", msg, part1);
    cr_expect(!part2 || strstr(msg, part2) != NULL, "message \"%s\" does not "
              "mention %s", msg, part2);
    cr_expect_null(cJSON_GetObjectItem(res, "values"));
    cr_expect_null(cJSON_GetObjectItem(res, "params"));
    cJSON_Delete(res);
    run_free(&r);
}

/* The hand case with one group of optimizer name and params. */
static const char *one_group(const char *name, const char *params)
{
    static char text[4096];
    snprintf(text, sizeof text, HEAD OPT_TENSORS "\"optimizer\": {\"steps\": "
             "1, \"groups\": [{\"name\": \"%s\", \"leaves\": [\"x\"], "
             "\"params\": %s}]}}", name, params);
    return text;
}

Test(eval, invalid_optimizers_give_the_error_object)
{
    expect_eval_error(one_group("lbfgs", "{}"), "invalid_argument",
                      "unknown optimizer \"lbfgs\"", "groups[0]");
    expect_eval_error(one_group("adam", "{\"momentum\": 0.9}"),
                      "invalid_argument", "unknown parameter \"momentum\"",
                      "\"betas\"");
    /* The library's own names for the betas are not torch's. */
    expect_eval_error(one_group("adam", "{\"beta1\": 0.5}"),
                      "invalid_argument", "unknown parameter \"beta1\"", NULL);
    expect_eval_error(one_group("adam", "{\"maximize\": false}"),
                      "invalid_argument", "unknown parameter \"maximize\"",
                      NULL);
    expect_eval_error(one_group("sgd", "{\"lr\": 0.1, \"betas\": [0.9, "
                                "0.99]}"), "invalid_argument",
                      "unknown parameter \"betas\"", NULL);
    expect_eval_error(one_group("sparse_adam", "{\"weight_decay\": 0.1}"),
                      "invalid_argument", "unknown parameter \"weight_decay\"",
                      NULL);
    expect_eval_error(one_group("adam", "{\"lr\": -0.5}"), "invalid_argument",
                      "lr = -0.5", NULL);
    expect_eval_error(one_group("sgd", "{\"lr\": 0.1, \"nesterov\": true}"),
                      "invalid_argument", "nesterov", "momentum = 0");
    expect_eval_error(one_group("sgd", "{\"lr\": 0.1, \"momentum\": 0.9, "
                                "\"dampening\": 0.1, \"nesterov\": true}"),
                      "invalid_argument", "nesterov", "dampening = 0.1");
    expect_eval_error(one_group("sgd", "{\"momentum\": 0.9}"),
                      "invalid_argument", "lr is required", NULL);
    expect_eval_error(one_group("adamw", "{\"betas\": [0.9, 1.0]}"),
                      "invalid_argument", "beta2", "= 1");
    expect_eval_error(one_group("adagrad", "{\"eps\": -1e-10}"),
                      "invalid_argument", "eps = -1e-10", NULL);
    /* x is read by mul: its gradient is dense. */
    expect_eval_error(one_group("sparse_adam", "{}"), "invalid_argument",
                      "leaf \"x\" needs a row-sparse gradient",
                      "node \"y\" (mul)");
}

/* sparse_adam needs every use to be a sparse lookup taking it as weight. */
Test(eval, sparse_adam_needs_a_row_sparse_gradient)
{
#define SPARSE_CASE(attrs, extra_node)                                        \
    HEAD "\"tensors\": {"                                                     \
    " \"W\": {\"dtype\": \"f64\", \"shape\": [3, 2], \"data\": "              \
    "[1, 2, 3, 4, 5, 6], \"requires_grad\": true},"                           \
    " \"i\": {\"dtype\": \"i64\", \"shape\": [2], \"data\": [0, 2]}},"        \
    " \"nodes\": [{\"name\": \"E\", \"op\": \"embedding\", \"inputs\": "      \
    "{\"input\": \"i\", \"weight\": \"W\"}, \"attrs\": " attrs "}"            \
    extra_node "],"                                                           \
    " \"seeds\": {\"E\": {\"dtype\": \"f64\", \"shape\": [2, 2], \"data\": "  \
    "[1, 1, 1, 1]}},"                                                         \
    " \"optimizer\": {\"steps\": 1, \"groups\": [{\"name\": \"sparse_adam\", "\
    "\"leaves\": [\"W\"]}]}}"
    expect_eval_error(SPARSE_CASE("{\"sparse\": false}", ""),
                      "invalid_argument", "leaf \"W\"", "node \"E\"");
    /* A second, dense use (even one no seed reaches) makes it dense. */
    expect_eval_error(SPARSE_CASE("{\"sparse\": true}", ", {\"name\": \"T\", "
                                  "\"op\": \"tanh\", \"inputs\": {\"input\": "
                                  "\"W\"}}"),
                      "invalid_argument", "leaf \"W\"", "node \"T\" (tanh)");
    /* Only sparse lookups: fine. */
    const char *path = write_case("ok.json", SPARSE_CASE("{\"sparse\": true}",
                                                         ""));
    run_out r = run_tool((const char *[]){"--eval", path, NULL});
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "\"params\"") && !strstr(r.out, "\"error\""),
              "%s", r.out);
    run_free(&r);
#undef SPARSE_CASE
}

/* rowwise_adagrad is yoke's extension: accepted. */
Test(eval, rowwise_adagrad_is_accepted)
{
    const char *path = write_case("rw.json", one_group("rowwise_adagrad",
                                                       "{\"lr\": 0.1}"));
    run_out r = run_tool((const char *[]){"--eval", path, NULL});
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "\"params\"") && !strstr(r.out, "\"error\""),
              "%s", r.out);
    run_free(&r);
}

/* A feed that makes a later step invalid fails the case, naming the step;
 * so does one that changes a seeded node's shape. */
Test(eval, a_feed_that_breaks_a_step_fails_the_case)
{
#define FEED_CASE(second)                                                     \
    HEAD OPT_TENSORS "\"optimizer\": {\"steps\": 2, " OPT_GROUPS ", "        \
    "\"feeds\": [{}, {\"c\": " second "}]}}"
    /* x [2] * c [3] do not broadcast */
    expect_eval_error(FEED_CASE("{\"dtype\": \"f64\", \"shape\": [3], "
                                "\"data\": [1, 2, 3]}"),
                      "shape_mismatch", "step 2 of 2", "node \"y\"");
    /* x [2] * c [2, 2] is [2, 2], but y's seed is [2] */
    expect_eval_error(FEED_CASE("{\"dtype\": \"f64\", \"shape\": [2, 2], "
                                "\"data\": [1, 2, 3, 4]}"),
                      "shape_mismatch", "step 2 of 2: node \"y\" has shape "
                      "[2, 2], but its seed has shape [2]", NULL);
#undef FEED_CASE
}

/* Malformed optimizer blocks: the file is refused, exit 1. */
Test(eval, malformed_optimizer_blocks_are_refused_with_a_message)
{
#define OPT(block) HEAD OPT_TENSORS "\"optimizer\": " block "}"
#define GROUP(g) OPT("{\"steps\": 1, \"groups\": [" g "]}")
    expect_malformed(OPT("3"), "optimizer: must be an object");
    expect_malformed(OPT("{\"steps\": 1, \"groups\": [], \"feed\": []}"),
                     "unknown key \"feed\"");
    expect_malformed(OPT("{\"groups\": []}"),
                     "optimizer.steps: must be an integer >= 1, got nothing");
    expect_malformed(OPT("{\"steps\": 0, \"groups\": []}"),
                     "optimizer.steps: must be an integer >= 1, got 0");
    expect_malformed(OPT("{\"steps\": 1.5, \"groups\": []}"),
                     "optimizer.steps: must be an integer >= 1, got 1.5");
    expect_malformed(OPT("{\"steps\": 1}"), "optimizer.groups: missing");
    expect_malformed(OPT("{\"steps\": 1, \"groups\": {}}"),
                     "optimizer.groups: must be a list");
    expect_malformed(GROUP("\"sgd\""), "optimizer.groups[0]: must be an "
                     "object");
    expect_malformed(GROUP("{\"name\": \"sgd\", \"leaves\": [\"x\"], "
                           "\"lr\": 0.1}"), "unknown key \"lr\"");
    expect_malformed(GROUP("{\"name\": 1, \"leaves\": [\"x\"]}"),
                     "groups[0].name: must be an optimizer name");
    expect_malformed(GROUP("{\"name\": \"sgd\"}"),
                     "groups[0].leaves: missing");
    expect_malformed(GROUP("{\"name\": \"sgd\", \"leaves\": \"x\"}"),
                     "groups[0].leaves: must be a list");
    expect_malformed(GROUP("{\"name\": \"sgd\", \"leaves\": [\"q\"]}"),
                     "leaves[0]: there is no tensor \"q\"");
    expect_malformed(GROUP("{\"name\": \"sgd\", \"leaves\": [\"c\"]}"),
                     "tensor \"c\" does not require grad");
    expect_malformed(GROUP("{\"name\": \"sgd\", \"leaves\": [\"x\", \"x\"]}"),
                     "leaves[1]: tensor \"x\" is already in "
                     "optimizer.groups[0]");
    expect_malformed(GROUP("{\"name\": \"sgd\", \"leaves\": [\"x\"]}, "
                           "{\"name\": \"adam\", \"leaves\": [\"u\", \"x\"]}"),
                     "groups[1].leaves[1]: tensor \"x\" is already in "
                     "optimizer.groups[0]");
    expect_malformed(GROUP("{\"name\": \"sgd\", \"leaves\": [\"x\"], "
                           "\"params\": [0.1]}"),
                     "groups[0].params: must be an object");
    expect_malformed(GROUP("{\"name\": \"sgd\", \"leaves\": [\"x\"], "
                           "\"params\": {\"lr\": \"0.1\"}}"),
                     "params.lr: must be a number, got a string");
    expect_malformed(GROUP("{\"name\": \"sgd\", \"leaves\": [\"x\"], "
                           "\"params\": {\"lr\": 0.1, \"nesterov\": 1}}"),
                     "params.nesterov: must be true or false");
    expect_malformed(GROUP("{\"name\": \"adam\", \"leaves\": [\"x\"], "
                           "\"params\": {\"betas\": [0.9]}}"),
                     "params.betas: must be a list of two numbers");
    expect_malformed(GROUP("{\"name\": \"adam\", \"leaves\": [\"x\"], "
                           "\"params\": {\"lr\": 1, \"lr\": 2}}"),
                     "key \"lr\" is given twice");
    expect_malformed(OPT("{\"steps\": 2, " OPT_GROUPS ", \"feeds\": {}}"),
                     "optimizer.feeds: must be a list");
    expect_malformed(OPT("{\"steps\": 3, " OPT_GROUPS ", " OPT_FEEDS "}"),
                     "optimizer.feeds: has 2 entries, but steps is 3");
    expect_malformed(OPT("{\"steps\": 2, " OPT_GROUPS ", \"feeds\": [{}, "
                         "[]]}"), "optimizer.feeds[1]: must be an object");
    expect_malformed(OPT("{\"steps\": 1, " OPT_GROUPS ", \"feeds\": [{\"q\": "
                         "{\"dtype\": \"f64\", \"shape\": [], \"data\": "
                         "[1]}}]}"), "feeds[0].q: there is no tensor \"q\"");
    expect_malformed(OPT("{\"steps\": 1, " OPT_GROUPS ", \"feeds\": [{\"x\": "
                         "{\"dtype\": \"f64\", \"shape\": [2], \"data\": "
                         "[1, 2]}}]}"), "tensor \"x\" requires grad");
    expect_malformed(OPT("{\"steps\": 1, " OPT_GROUPS ", \"feeds\": [{\"c\": "
                         "{\"dtype\": \"f32\", \"shape\": [2], \"data\": "
                         "[1, 2]}}]}"), "feeds[0].c: dtype f32, but tensor "
                     "\"c\" is f64");
    expect_malformed(OPT("{\"steps\": 1, " OPT_GROUPS ", \"feeds\": [{\"c\": "
                         "{\"dtype\": \"f64\", \"shape\": [2], \"data\": "
                         "[1]}}]}"), "feeds[0].c.data: has 1 numbers");
    expect_malformed(HEAD OPT_TENSORS "\"optimizer\": {\"steps\": 1, "
                     OPT_GROUPS "}, \"expected\": {\"params\": {\"v\": "
                     "{\"dtype\": \"f64\", \"shape\": [1], \"data\": [7]}}}}",
                     "expected.params.v: tensor \"v\" is in no optimizer "
                     "group");
    expect_malformed(HEAD OPT_TENSORS "\"expected\": {\"params\": {\"x\": "
                     "{\"dtype\": \"f64\", \"shape\": [2], \"data\": [1, 2]}}}}",
                     "only a case with an \"optimizer\"");
#undef GROUP
#undef OPT
}

/* ------------------------------------------------------------ checking */

Test(check, a_wrong_expected_gradient_is_named)
{
    /* The hand case with dL/dx[1] given as 2.5 instead of 2. */
    char text[2048];
    snprintf(text, sizeof text, "%.*s, \"expected\": {\"grads\": {\"x\": "
             "{\"dtype\": \"f64\", \"shape\": [3], \"data\": [0, 2.5, 3]}}}}",
             (int)strlen(hand_case) - 1, hand_case);
    const char *path = write_case("wrong.json", text);
    run_out r = run_tool((const char *[]){path, NULL});
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.out, "FAIL  hand") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "grad \"x\"[1]: got 2, expected 2.5") != NULL,
              "%s", r.out);
    run_free(&r);
}

Test(check, a_wrong_error_category_fails)
{
    const char *path = write_case("cat.json",
        "{\"format\": \"yoke-case/1\", \"name\": \"cat\", \"tensors\": {"
        " \"W\": {\"dtype\": \"f64\", \"shape\": [2, 2], \"data\": [1, 2, 3, 4]},"
        " \"i\": {\"dtype\": \"i64\", \"shape\": [1], \"data\": [2]}},"
        " \"nodes\": [{\"name\": \"E\", \"op\": \"embedding\", \"inputs\": "
        "{\"input\": \"i\", \"weight\": \"W\"}}],"
        " \"expected\": {\"error\": \"bad_offsets\"}}");
    run_out r = run_tool((const char *[]){path, NULL});
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.out, "expected error bad_offsets, got "
                     "index_out_of_range") != NULL, "%s", r.out);
    run_free(&r);
}

/* The hand-worked optimizer case checks, its finite differences taken
 * with feeds[0] applied (c's own [100, 100] would give other gradients);
 * a wrong expected parameter is named. */
Test(check, optimizer_params_are_compared_after_the_last_step)
{
#define OPT_EXPECTED(x1)                                                      \
    OPT_HAND ", \"expected\": {\"grads\": {\"x\": {\"dtype\": \"f64\", "    \
    "\"shape\": [2], \"data\": [3, -1]}}, \"params\": {\"x\": {\"dtype\": " \
    "\"f64\", \"shape\": [2], \"data\": [-2.85, " x1 "]}, \"u\": "           \
    "{\"dtype\": \"f64\", \"shape\": [1], \"data\": [5]}}}}"
    const char *path = write_case("good.json", OPT_EXPECTED("0.95"));
    run_out r = run_tool((const char *[]){path, "--json", NULL});
    cr_expect_eq(r.status, 0, "%s", r.out);
    cJSON *rep = cJSON_Parse(r.out);
    const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(rep, "cases"), 0);
    cr_assert(c, "%s", r.out);
    cr_expect_eq(cJSON_GetObjectItem(c, "params_compared")->valuedouble, 3);
    cr_expect_eq(cJSON_GetObjectItem(c, "grads_compared")->valuedouble, 2);
    /* x, u, v: 4 elements, all checked (f64) */
    cr_expect_eq(cJSON_GetObjectItem(c, "fd_checked")->valuedouble, 4);
    cJSON_Delete(rep);
    run_free(&r);
    path = write_case("bad.json", OPT_EXPECTED("0.96"));
    r = run_tool((const char *[]){path, NULL});
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.out, "param \"x\"[1]: got 0.9499") != NULL &&
              strstr(r.out, "expected 0.9599") != NULL, "%s", r.out);
    run_free(&r);
#undef OPT_EXPECTED
}

/* An expected error of a later step is checked like any other. */
Test(check, an_error_in_a_later_step_is_the_case_error)
{
    const char *path = write_case("late.json", HEAD OPT_TENSORS
        "\"optimizer\": {\"steps\": 2, " OPT_GROUPS ", \"feeds\": [{}, {\"c\":"
        " {\"dtype\": \"f64\", \"shape\": [3], \"data\": [1, 2, 3]}}]}, "
        "\"expected\": {\"error\": \"shape_mismatch\"}}");
    run_out r = run_tool((const char *[]){path, NULL});
    cr_expect_eq(r.status, 0, "%s", r.out);
    cr_expect(strstr(r.out, "failed as expected with shape_mismatch: step 2 "
                     "of 2") != NULL, "%s", r.out);
    run_free(&r);
}

Test(check, a_malformed_file_is_a_failure)
{
    const char *ok = write_case("ok.json", hand_case);
    char okpath[600];
    snprintf(okpath, sizeof okpath, "%s", ok);
    const char *bad = write_case("bad.json", "{");
    run_out r = run_tool((const char *[]){okpath, bad, NULL});
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.out, "PASS  hand") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "not valid JSON") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "1 passed, 1 failed") != NULL, "%s", r.out);
    run_free(&r);
}

/* relu at exactly 0 is a kink: counted, not checked, in case files. */
Test(check, kinks_in_case_files_are_counted_not_failed)
{
    const char *path = write_case("kink.json",
        "{\"format\": \"yoke-case/1\", \"name\": \"kink\", \"tensors\": {"
        " \"x\": {\"dtype\": \"f64\", \"shape\": [2], \"data\": [0, 1],"
        "  \"requires_grad\": true}},"
        " \"nodes\": [{\"name\": \"y\", \"op\": \"relu\", \"inputs\": {\"input\": \"x\"}}],"
        " \"seeds\": {\"y\": {\"dtype\": \"f64\", \"shape\": [2], \"data\": [1, 1]}},"
        " \"expected\": {\"grads\": {\"x\": {\"dtype\": \"f64\", \"shape\": [2],"
        " \"data\": [0, 1]}}}}");
    run_out r = run_tool((const char *[]){path, "--json", NULL});
    cr_expect_eq(r.status, 0, "%s", r.out);
    cJSON *rep = cJSON_Parse(r.out);
    const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(rep, "cases"), 0);
    cr_expect_eq(cJSON_GetObjectItem(c, "fd_kinks")->valuedouble, 1);
    cr_expect_eq(cJSON_GetObjectItem(c, "fd_checked")->valuedouble, 1);
    cJSON_Delete(rep);
    run_free(&r);
}

/* ------------------------------------------------------------------ cli */

Test(cli, help_version_and_usage_errors)
{
    run_out r = run_tool((const char *[]){"--help", NULL});
    cr_expect_eq(r.status, 0);
    const char *opts[] = {"--eval", "--all-ops", "--op", "--eps", "--atol",
                          "--rtol", "--seed", "--json", "--dump", "--version"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        cr_expect(strstr(r.out, opts[i]) != NULL, "--help omits %s", opts[i]);
    run_free(&r);
    r = run_tool((const char *[]){"--version", NULL});
    cr_expect_eq(r.status, 0);
    cr_expect(strstr(r.out, yk_version()) != NULL, "%s", r.out);
    run_free(&r);
    const char *const bad[][4] = {
        {"--frob", NULL}, {NULL}, {"--op", "relu", NULL},
        {"--all-ops", "--op", "nosuchop", NULL}, {"--eps", "-1", "x", NULL},
        {"--eval", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = run_tool(bad[i]);
        cr_expect_eq(r.status, 2, "usage error %zu: exit %d", i, r.status);
        cr_expect(r.err[0], "usage error %zu: no message", i);
        run_free(&r);
    }
}

/* ---------------------------------------- the checker catches bad ops */

/* A test-local tanh whose backward is wrong in element 2 (mode WRONG),
 * differs between runs (mode UNSTABLE), or adds a constant whatever the
 * seed (mode NOT_ZERO). */
enum { WRONG, UNSTABLE, NOT_ZERO } broken_mode;
static const yk_op_def broken_tanh;

static yk_node *build_broken(yk_graph *g, yk_node *const *in, int n,
                             const yk_attr_value *a)
{
    (void)n;
    (void)a;
    yk_node *x = in[0];
    if (!yk__inputs_ok(g, "tanh", 1, &x))
        return NULL;
    const yk_tensor *v = yk_value(x);
    yk_node *y = yk__node_new(g, &broken_tanh, 1, &x, v->dtype, v->ndim,
                              v->shape);
    for (int64_t i = 0; y && i < v->numel; i++)
        ((double *)yk__data(y))[i] = tanh(((const double *)v->data)[i]);
    return y;
}

static yk_status backward_broken(yk_graph *g, yk_node *y, const void *gy)
{
    static int calls;
    const double *v = y->value.data, *dy = gy;
    double *dx = yk__grad_dense(g, y, 0);
    if (!dx)
        return g->status;
    calls++;
    for (int64_t i = 0; i < y->value.numel; i++) {
        double d = dy[i] * (1 - v[i] * v[i]);
        if (broken_mode == WRONG && i == 2)
            d *= 1.5;
        if (broken_mode == UNSTABLE && i == 1)
            d += calls * 1e-9;
        if (broken_mode == NOT_ZERO)
            d += 1e-3;
        dx[i] += d;
    }
    return YK_OK;
}

static const yk_op_def broken_tanh = {
    .name = "tanh", .n_inputs = 1, .input_names = {"input"},
    .build = build_broken, .backward = backward_broken};

static const yk_op_def *broken_lookup(const char *name)
{
    return strcmp(name, "tanh") == 0 ? &broken_tanh : yk_op_find(name);
}

/* y = tanh(x) for x of 4 elements, seeded with [1, -2, 0.5, 3]. */
static cf_case *broken_case(void)
{
    char err[CF_MSG];
    cJSON *j = cJSON_Parse(
        "{\"format\": \"yoke-case/1\", \"name\": \"broken\", \"tensors\": {"
        " \"x\": {\"dtype\": \"f64\", \"shape\": [2, 2], \"data\": "
        "[0.3, -0.7, 0.9, 0.1], \"requires_grad\": true}},"
        " \"nodes\": [{\"name\": \"y\", \"op\": \"tanh\", \"inputs\": {\"input\": \"x\"}}],"
        " \"seeds\": {\"y\": {\"dtype\": \"f64\", \"shape\": [2, 2], \"data\": "
        "[1, -2, 0.5, 3]}}}");
    cr_assert(j);
    cf_case *c = cf_from_json(j, "broken", broken_lookup, err, sizeof err);
    cr_assert(c, "%s", err);
    return c;
}

static bool any_failure_mentions(const cf_report *r, const char *part)
{
    for (int i = 0; i < r->n_failures && i < CF_MAX_FAILURES; i++)
        if (strstr(r->failures[i], part))
            return true;
    return false;
}

Test(checker, a_wrong_backward_is_caught_with_the_worst_element)
{
    broken_mode = WRONG;
    cf_case *c = broken_case();
    cf_report r;
    cf_check(c, NULL, &r);
    cr_expect(!r.passed, "a backward wrong by 50%% in x[1, 0] passed");
    cr_expect_str_eq(r.worst.leaf, "x");
    cr_expect_eq(r.worst.index, 2);
    cr_expect_str_eq(r.worst.where, "[1, 0]");
    /* analytic 1.5 * 0.5 * (1 - tanh(0.9)^2), numeric without the 1.5 */
    double d = 0.5 * (1 - tanh(0.9) * tanh(0.9));
    cr_expect(fabs(r.worst.analytic - 1.5 * d) < 1e-12, "%g", r.worst.analytic);
    cr_expect(fabs(r.worst.numeric - d) < 1e-8, "%g", r.worst.numeric);
    cr_expect(any_failure_mentions(&r, "\"x\"[1, 0]"), "%s", r.failures[0]);
    cr_expect_eq(r.fd_checked, 4);
    cf_free(c);
}

Test(checker, unstable_and_seed_ignoring_backwards_are_caught)
{
    cf_report r;
    broken_mode = UNSTABLE;
    cf_case *c = broken_case();
    cf_check(c, NULL, &r);
    cr_expect(any_failure_mentions(&r, "two backward passes gave different "
                                   "gradients for \"x\""), "%s",
              r.failures[0]);
    cf_free(c);
    broken_mode = NOT_ZERO;
    c = broken_case();
    cf_check(c, NULL, &r);
    cr_expect(any_failure_mentions(&r, "a zero seed gave a non-zero "
                                   "gradient"), "%s", r.failures[0]);
    cf_free(c);
}

/* The same op through the library's yk_gradcheck. */
static yk_node *build_broken_graph(yk_graph *g, void *ud)
{
    yk_node *x = yk_param_node(g, ud);
    return build_broken(g, &x, 1, NULL);
}

Test(checker, yk_gradcheck_names_the_same_element)
{
    broken_mode = WRONG;
    yk_ctx *ctx = yk_ctx_new();
    yk_model *m = yk_model_new(ctx);
    yk_param *x = param_with(m, "x", YK_F64, SHAPE(2, 2),
                             VALS(0.3, -0.7, 0.9, 0.1));
    yk_gradcheck_report rep;
    cr_assert_eq(yk_gradcheck(m, build_broken_graph, x, NULL, &rep), YK_OK,
                 "%s", yk_last_error(ctx));
    cr_expect(!rep.passed);
    cr_expect_str_eq(rep.param, "x");
    cr_expect_eq(rep.index, 2);
    yk_model_free(m);
    yk_ctx_free(ctx);
}

/* Generated inputs must avoid kinks: with strict on, relu at 0 fails. */
Test(checker, strict_mode_fails_at_a_kink)
{
    char err[CF_MSG];
    cJSON *j = cJSON_Parse(
        "{\"format\": \"yoke-case/1\", \"name\": \"k\", \"tensors\": {"
        " \"x\": {\"dtype\": \"f64\", \"shape\": [2], \"data\": [0, 1],"
        "  \"requires_grad\": true}},"
        " \"nodes\": [{\"name\": \"y\", \"op\": \"relu\", \"inputs\": {\"input\": \"x\"}}],"
        " \"seeds\": {\"y\": {\"dtype\": \"f64\", \"shape\": [2], \"data\": [1, 1]}}}");
    cf_case *c = cf_from_json(j, "k", NULL, err, sizeof err);
    cr_assert(c, "%s", err);
    cf_check_opts o = {0, 0, 0, true};
    cf_report r;
    cf_check(c, &o, &r);
    cr_expect(!r.passed);
    cr_expect(any_failure_mentions(&r, "non-differentiable"), "%s",
              r.failures[0]);
    cr_expect_eq(r.fd_kinks, 1);
    cf_free(c);
}

/* Rows whose gradient the contract bends: embedding's padding row is not
 * checked (one row of 2 numbers here), a scale_grad_by_freq lookup that is
 * the weight's only use is checked against the derivative / count. */
Test(checker, contract_rows_are_exempt_or_rescaled_and_no_more)
{
    char err[CF_MSG];
    cJSON *j = cJSON_Parse(
        "{\"format\": \"yoke-case/1\", \"name\": \"c\", \"tensors\": {"
        " \"W\": {\"dtype\": \"f64\", \"shape\": [3, 2], \"data\": "
        "[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], \"requires_grad\": true},"
        " \"V\": {\"dtype\": \"f64\", \"shape\": [3, 2], \"data\": "
        "[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], \"requires_grad\": true},"
        " \"i\": {\"dtype\": \"i64\", \"shape\": [3], \"data\": [1, 2, 1]},"
        " \"k\": {\"dtype\": \"i64\", \"shape\": [3], \"data\": [0, 0, 2]}},"
        " \"nodes\": [{\"name\": \"E\", \"op\": \"embedding\", \"inputs\": "
        "{\"input\": \"i\", \"weight\": \"W\"}, \"attrs\": {\"padding_idx\": 1}},"
        " {\"name\": \"F\", \"op\": \"embedding\", \"inputs\": {\"input\": \"k\","
        " \"weight\": \"V\"}, \"attrs\": {\"scale_grad_by_freq\": true}}],"
        " \"seeds\": {\"E\": {\"dtype\": \"f64\", \"shape\": [3, 2], \"data\": "
        "[1, 2, 3, 4, 5, 6]}, \"F\": {\"dtype\": \"f64\", \"shape\": [3, 2], "
        "\"data\": [1, -1, 2, -2, 3, -3]}}}");
    cf_case *c = cf_from_json(j, "c", NULL, err, sizeof err);
    cr_assert(c, "%s", err);
    cf_report r;
    cf_check(c, NULL, &r);
    cr_expect(r.passed, "%s", r.failures[0]);
    cr_expect_eq(r.fd_exempt, 2, "only W's padding row is exempt");
    cr_expect_eq(r.fd_checked, 10);
    cf_free(c);
}
