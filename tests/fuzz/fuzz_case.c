/*
 * fuzz_case -- libFuzzer target for the yoke-case/1 reader and evaluator
 * (tools/case.c, the code behind tools/gradcheck). The input is a case
 * file's text.
 *
 * What runs: the JSON parse and cf_from_json (what cf_load does after
 * reading the file), then, for a valid case, cf_run (one evaluation, or the
 * optimizer loop of an "optimizer" block: every op of the registry and
 * every optimizer is reachable with any arguments a file can hold) and the
 * result printer. Cases asking for more than MAX_STEPS steps are only
 * parsed (a long run is what they ask for, not a hang). Promises checked
 * besides "no crash, no leak, no sanitizer report":
 *   - a refused case says why (a non-empty message);
 *   - a failed evaluation has one of the case-format error categories (or
 *     out_of_memory / not_implemented) and a message;
 *   - a successful one has a value for every node, a gradient for every
 *     leaf with requires_grad, and with an optimizer a value for every
 *     trained leaf.
 */
#include "fuzz_util.h"

#include <cjson/cJSON.h>

#include "case.h"

enum { MAX_STEPS = 50 };

static bool allowed_eval_error(yk_status s)
{
    return s == YK_EINVAL || s == YK_ERANGE || s == YK_EOFFSETS ||
           s == YK_ESHAPE || s == YK_EDTYPE || s == YK_ENOMEM ||
           s == YK_ENOTIMPL;
}

static void evaluate(const cf_case *c, FILE *sink)
{
    char err[CF_MSG];
    cf_session s;
    if (!cf_session_init(&s, c, err, sizeof err))
        return; /* out of memory only */
    cf_result r;
    cf_run(&s, &r);
    if (r.status != YK_OK) {
        if (!allowed_eval_error(r.status) || !r.message[0])
            fuzz_fail("cf_run: status %s, message \"%s\"",
                      yk_status_name(r.status), r.message);
    } else {
        for (int j = 0; j < c->n_nodes; j++)
            if (!r.values[j])
                fuzz_fail("cf_run: node %d has no value", j);
        for (int i = 0; i < c->n_leaves; i++)
            if (c->leaves[i].requires_grad && !r.grads[i])
                fuzz_fail("cf_run: leaf %d has no gradient", i);
        for (int k = 0; k < c->n_groups; k++)
            for (int j = 0; j < c->groups[k].n_leaves; j++)
                if (!r.params || !r.params[c->groups[k].leaves[j]])
                    fuzz_fail("cf_run: trained leaf %d has no value",
                              c->groups[k].leaves[j]);
    }
    cf_print_result(sink, c, &r);
    cf_result_free(c, &r);
    cf_session_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    if (!sink)
        sink = fopen("/dev/null", "w");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)data, size, &end,
                                            false);
    if (!root)
        return 0; /* cJSON's own parser is not what this target tests */
    char err[CF_MSG] = "";
    cf_case *c = cf_from_json(root, "fuzz.json", NULL, err, sizeof err);
    if (!c) {
        if (!err[0])
            fuzz_fail("cf_from_json refused the case without a message");
        return 0;
    }
    if (!cf_unsupported(c) && c->steps <= MAX_STEPS && sink)
        evaluate(c, sink);
    cf_free(c);
    return 0;
}
