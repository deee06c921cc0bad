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

/* True when the file has an "optimizer" block (not supported yet). */
static bool has_optimizer(const char *path)
{
    char err[CF_MSG];
    cf_case *c = cf_load(path, err, sizeof err);
    bool opt = c && c->optimizer;
    cf_free(c);
    return opt; /* a file that does not load is the tool's to report */
}

/* Runs the tool over pattern's files, skipping optimizer cases. */
static void check_all(const char *pattern)
{
    glob_t gl;
    int g = glob(pattern, 0, NULL, &gl);
    if (g == GLOB_NOMATCH)
        cr_skip_test("no case files match %s", pattern);
    cr_assert_eq(g, 0, "glob %s failed", pattern);
    const char **args = calloc(gl.gl_pathc + 1, sizeof *args);
    cr_assert(args);
    size_t n = 0;
    for (size_t i = 0; i < gl.gl_pathc; i++) {
        if (has_optimizer(gl.gl_pathv[i]))
            /* info, not warn: a warning makes Criterion 2.4 exit 1 */
            cr_log_info("skipping %s: optimizer blocks are not supported by "
                        "tools/gradcheck yet", gl.gl_pathv[i]);
        else
            args[n++] = gl.gl_pathv[i];
    }
    if (n == 0) {
        free(args);
        globfree(&gl);
        cr_skip_test("every case in %s has an optimizer block", pattern);
    }
    run_out r = run_tool(args);
    cr_log_info("%s: %zu cases checked, %zu skipped", pattern, n,
                gl.gl_pathc - n);
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

Test(eval, optimizer_blocks_are_refused_for_now)
{
    const char *path = write_case("opt.json", HEAD "\"tensors\": {" X3 "}, "
        "\"nodes\": [" RELU "], \"optimizer\": {\"steps\": 1, \"groups\": []}}");
    run_out r = run_tool((const char *[]){"--eval", path, NULL});
    cr_expect_neq(r.status, 0);
    cr_expect(strstr(r.err, "optimizer blocks not supported yet") != NULL,
              "%s", r.err);
    run_free(&r);
    r = run_tool((const char *[]){path, NULL});
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.out, "optimizer blocks not supported yet") != NULL,
              "%s", r.out);
    run_free(&r);
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
