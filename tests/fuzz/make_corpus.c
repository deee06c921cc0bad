/*
 * make_corpus -- writes the generated part of the fuzzers' seed corpus
 * (tests/fuzz/run.sh --make-corpus runs it from the repository root):
 *
 *   corpus/safetensors/  checkpoints yoke writes for the model the target
 *                        loads (W f32 [3, 2], b f64 [2], s f64 [], extra
 *                        "counts" i64 [3]): weights only, with Adam's state,
 *                        with rowwise Adagrad's state, and an empty model
 *   corpus/embedding_bag/  byte strings: each byte a choice of the target
 *
 * The .vec and case seeds are text, written by hand or copied from
 * tests/data and tests/cases (see tests/fuzz/README.md).
 */
#include <stdio.h>
#include <stdlib.h>

#include "yoke.h"

#define CHECK(x)                                                             \
    do {                                                                     \
        if (!(x)) {                                                          \
            fprintf(stderr, "make_corpus: %s: %s\n", #x,                     \
                    yk_last_error(ctx));                                     \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

static yk_ctx *ctx;

static yk_model *target_model(void)
{
    yk_model *m = yk_model_new(ctx);
    CHECK(m);
    yk_param *w = yk_model_add(m, "W", YK_F32, 2, (int64_t[]){3, 2});
    yk_param *b = yk_model_add(m, "b", YK_F64, 1, (int64_t[]){2});
    CHECK(w && b && yk_model_add(m, "s", YK_F64, 0, NULL));
    CHECK(yk_tensor_fill_normal(yk_param_value(w), 1, 0, 1) == YK_OK);
    CHECK(yk_tensor_fill_uniform(yk_param_value(b), 2, -1, 1) == YK_OK);
    return m;
}

/* One step on loss = sum(W * W) so that the optimizer has state for W. */
static void train(yk_model *m, yk_optim *o)
{
    yk_graph *g = yk_graph_begin(ctx);
    yk_node *w = yk_param_node(g, yk_model_find(m, "W"));
    CHECK(yk_backward(g, yk_sum(g, yk_mul(g, w, w), 0, NULL, false)) == YK_OK);
    yk_graph_end(g);
    CHECK(yk_optim_step(o) == YK_OK);
}

static void safetensors_seeds(void)
{
    yk_model *m = target_model();
    yk_tensor *counts = yk_tensor_from(ctx, YK_I64, 1, (int64_t[]){3},
                                       (int64_t[]){1, -2, 3000000000});
    CHECK(counts);
    yk_named_tensor extra[] = {{"counts", counts}};
    yk_save_opts so = {.step = 7, .config = "{\"dim\": 2}", .n_extra = 1,
                       .extra = extra};
    CHECK(yk_model_save(m, "tests/fuzz/corpus/safetensors/weights.st",
                        &so) == YK_OK);
    yk_optim_kind kinds[] = {YK_OPTIM_ADAM, YK_OPTIM_ROWWISE_ADAGRAD};
    const char *paths[] = {"tests/fuzz/corpus/safetensors/adam.st",
                           "tests/fuzz/corpus/safetensors/rowwise.st"};
    for (int k = 0; k < 2; k++) {
        yk_optim *o = yk_optim_new(ctx, kinds[k], NULL);
        CHECK(o && yk_optim_add_model(o, m) == YK_OK);
        train(m, o);
        CHECK(yk_checkpoint_save(m, o, paths[k], &(yk_save_opts){
                  .step = 1}) == YK_OK);
        yk_optim_free(o);
    }
    yk_model *empty = yk_model_new(ctx);
    CHECK(yk_model_save(empty, "tests/fuzz/corpus/safetensors/empty.st",
                        NULL) == YK_OK);
    yk_model_free(empty);
    yk_tensor_free(counts);
    yk_model_free(m);
}

/* A few fixed byte strings: the target reads any bytes as choices, so
 * these only give it a start of varied lengths. */
static void embedding_bag_seeds(void)
{
    for (int k = 0; k < 6; k++) {
        char path[96];
        snprintf(path, sizeof path,
                 "tests/fuzz/corpus/embedding_bag/seed%d.bin", k);
        FILE *f = fopen(path, "wb");
        CHECK(f);
        uint64_t x = 0x9e3779b97f4a7c15u * (uint64_t)(k + 1);
        for (int i = 0; i < 24 + 12 * k; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            fputc((int)(x & 255), f);
        }
        fclose(f);
    }
}

int main(void)
{
    ctx = yk_ctx_new();
    CHECK(ctx);
    safetensors_seeds();
    embedding_bag_seeds();
    yk_ctx_free(ctx);
    return 0;
}
