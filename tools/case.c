/*
 * case.c -- yoke-case/1 files: the loader (strict: a malformed file is
 * reported with its place, never evaluated), the evaluator (generic over
 * the op registry), the result printer and the checks of tools/gradcheck.
 */
#include "case.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* A dim larger than this is an absurd shape, not a case. */
#define CF_MAX_DIM 2147483647LL

/* ================================================================ loader */

static int leaf_group(const cf_case *c, int leaf);

typedef struct loader {
    cf_case *c;
    yk_ctx *ctx;
    cf_op_lookup lookup;
    char *err;
    size_t errlen;
} loader;

/* Writes "origin: message" into the loader's err; returns false. */
__attribute__((format(printf, 2, 3)))
static bool bad(loader *L, const char *fmt, ...)
{
    int n = snprintf(L->err, L->errlen, "%s: ", L->c->origin);
    if (n < 0 || (size_t)n >= L->errlen)
        return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->err + n, L->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

static const char *json_type(const cJSON *j)
{
    if (!j) return "nothing";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsArray(j)) return "a list";
    if (cJSON_IsObject(j)) return "an object";
    return "an invalid value";
}

/* An integral JSON number in [lo, hi]. */
static bool get_int(const cJSON *j, int64_t lo, int64_t hi, int64_t *out)
{
    if (!cJSON_IsNumber(j))
        return false;
    double v = j->valuedouble;
    /* 2^63 is the first double past INT64_MAX. */
    if (!(v == floor(v)) || v < -9223372036854775808.0 ||
        v >= 9223372036854775808.0)
        return false;
    int64_t i = (int64_t)v;
    if (i < lo || i > hi)
        return false;
    *out = i;
    return true;
}

/* Appends "name" to a list of names in buf, for messages. */
static void append_name(char *buf, size_t size, const char *name)
{
    size_t n = strlen(buf);
    snprintf(buf + n, size - n, "%s\"%s\"", n ? ", " : "", name);
}

/* "[2, 3]", for messages about shapes that are not tensors (yet). */
static void format_shape(int ndim, const int64_t *shape, char *buf,
                         size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? ", " : "",
                              (long long)shape[i]);
    if (n < size)
        snprintf(buf + n, size - n, "]");
}

/* No key of object j is given twice (cJSON keeps duplicates). */
static bool no_duplicates(loader *L, const cJSON *j, const char *where)
{
    for (const cJSON *k = j->child; k; k = k->next)
        for (const cJSON *d = j->child; d != k; d = d->next)
            if (strcmp(d->string, k->string) == 0)
                return bad(L, "%s: key \"%s\" is given twice", where,
                           k->string);
    return true;
}

/* Every key of object j must be one of keys (NULL-terminated), once. */
static bool keys_ok(loader *L, const cJSON *j, const char *where,
                    const char *const *keys)
{
    for (const cJSON *k = j->child; k; k = k->next) {
        bool known = false;
        for (int i = 0; keys[i] && !known; i++)
            known = strcmp(k->string, keys[i]) == 0;
        if (!known) {
            char list[256] = "";
            for (int i = 0; keys[i]; i++)
                append_name(list, sizeof list, keys[i]);
            return bad(L, "%s: unknown key \"%s\" (known: %s)", where,
                       k->string, list);
        }
    }
    return no_duplicates(L, j, where);
}

static bool parse_dtype(loader *L, const cJSON *j, const char *where,
                        yk_dtype *dt)
{
    const char *s = cJSON_IsString(j) ? j->valuestring : NULL;
    if (s && strcmp(s, "f32") == 0)
        *dt = YK_F32;
    else if (s && strcmp(s, "f64") == 0)
        *dt = YK_F64;
    else if (s && strcmp(s, "i64") == 0)
        *dt = YK_I64;
    else if (s)
        return bad(L, "%s.dtype: unknown dtype \"%s\" (use \"f32\", \"f64\" "
                   "or \"i64\")", where, s);
    else
        return bad(L, "%s.dtype: must be a string (\"f32\", \"f64\" or "
                   "\"i64\"), got %s", where, json_type(j));
    return true;
}

static bool parse_shape(loader *L, const cJSON *j, const char *where,
                        int *ndim, int64_t *shape)
{
    if (!cJSON_IsArray(j))
        return bad(L, "%s.shape: must be a list of sizes, got %s", where,
                   json_type(j));
    int n = cJSON_GetArraySize(j);
    if (n > YK_MAX_DIMS)
        return bad(L, "%s.shape: has %d dims, at most %d are supported",
                   where, n, YK_MAX_DIMS);
    int k = 0;
    for (const cJSON *e = j->child; e; e = e->next, k++)
        if (!get_int(e, 0, CF_MAX_DIM, &shape[k])) {
            if (cJSON_IsNumber(e))
                return bad(L, "%s.shape[%d]: must be an integer in [0, %lld], "
                           "got %g", where, k, CF_MAX_DIM, e->valuedouble);
            return bad(L, "%s.shape[%d]: must be an integer in [0, %lld], "
                       "got %s", where, k, CF_MAX_DIM, json_type(e));
        }
    *ndim = n;
    return true;
}

/* Number of elements of a shape, or -1 when it overflows int64. */
static int64_t shape_numel(int ndim, const int64_t *shape)
{
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0)
            return 0;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] > INT64_MAX / n)
            return -1;
        n *= shape[i];
    }
    return n;
}

static bool fill_data(loader *L, const cJSON *j, const char *where,
                      yk_tensor *t)
{
    void *d = yk_tensor_data(t);
    int64_t i = 0;
    for (const cJSON *e = j->child; e; e = e->next, i++) {
        if (yk_tensor_dtype(t) == YK_I64) {
            if (!get_int(e, INT64_MIN, INT64_MAX, &((int64_t *)d)[i]))
                return bad(L, "%s.data[%lld]: an i64 tensor needs whole "
                           "numbers, got %s", where, (long long)i,
                           json_type(e));
        } else if (!cJSON_IsNumber(e)) {
            return bad(L, "%s.data[%lld]: must be a number, got %s", where,
                       (long long)i, json_type(e));
        } else if (yk_tensor_dtype(t) == YK_F32) {
            ((float *)d)[i] = (float)e->valuedouble;
        } else {
            ((double *)d)[i] = e->valuedouble;
        }
    }
    return true;
}

/* A tensor object {"dtype", "shape", "data"[, "requires_grad"]}. rg is
 * NULL where requires_grad is not allowed. */
static yk_tensor *parse_tensor(loader *L, const cJSON *j, const char *where,
                               bool *rg)
{
    static const char *const leaf_keys[] = {"dtype", "shape", "data",
                                            "requires_grad", NULL};
    static const char *const keys[] = {"dtype", "shape", "data", NULL};
    if (!cJSON_IsObject(j))
        return bad(L, "%s: must be a tensor object {\"dtype\", \"shape\", "
                   "\"data\"}, got %s", where, json_type(j)), NULL;
    if (!keys_ok(L, j, where, rg ? leaf_keys : keys))
        return NULL;
    yk_dtype dt = YK_F64;
    int ndim = 0;
    int64_t shape[YK_MAX_DIMS];
    if (!parse_dtype(L, cJSON_GetObjectItemCaseSensitive(j, "dtype"), where,
                     &dt) ||
        !parse_shape(L, cJSON_GetObjectItemCaseSensitive(j, "shape"), where,
                     &ndim, shape))
        return NULL;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    if (!cJSON_IsArray(data))
        return bad(L, "%s.data: must be a list of numbers, got %s", where,
                   json_type(data)), NULL;
    int64_t have = cJSON_GetArraySize(data);
    int64_t need = shape_numel(ndim, shape);
    if (need != have) {
        char b[160];
        format_shape(ndim, shape, b, sizeof b);
        if (need < 0)
            return bad(L, "%s.data: has %lld numbers, shape %s needs more "
                       "than 2^63", where, (long long)have, b), NULL;
        return bad(L, "%s.data: has %lld numbers, shape %s needs %lld",
                   where, (long long)have, b, (long long)need), NULL;
    }
    if (rg) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "requires_grad");
        if (r && !cJSON_IsBool(r))
            return bad(L, "%s.requires_grad: must be true or false, got %s",
                       where, json_type(r)), NULL;
        *rg = cJSON_IsTrue(r);
        if (*rg && dt == YK_I64)
            return bad(L, "%s: an i64 tensor cannot require grad", where),
                   NULL;
    }
    yk_tensor *t = yk_tensor_zeros(L->ctx, dt, ndim, shape);
    if (!t)
        return bad(L, "%s: %s", where, yk_last_error(L->ctx)), NULL;
    if (!fill_data(L, data, where, t)) {
        yk_tensor_free(t);
        return NULL;
    }
    return t;
}

int cf_leaf_index(const cf_case *c, const char *name)
{
    for (int i = 0; i < c->n_leaves; i++)
        if (strcmp(c->leaves[i].name, name) == 0)
            return i;
    return -1;
}

int cf_node_index(const cf_case *c, const char *name)
{
    for (int j = 0; j < c->n_nodes; j++)
        if (c->nodes[j].name && strcmp(c->nodes[j].name, name) == 0)
            return j;
    return -1;
}

static bool parse_leaves(loader *L, const cJSON *j)
{
    cf_case *c = L->c;
    if (!cJSON_IsObject(j))
        return bad(L, "tensors: must be an object of named tensors, got %s",
                   json_type(j));
    int n = cJSON_GetArraySize(j);
    c->leaves = calloc((size_t)(n ? n : 1), sizeof *c->leaves);
    if (!c->leaves)
        return bad(L, "out of memory");
    for (const cJSON *e = j->child; e; e = e->next) {
        char where[160];
        snprintf(where, sizeof where, "tensors.%s", e->string);
        if (!e->string[0])
            return bad(L, "tensors: a tensor has an empty name");
        if (cf_leaf_index(c, e->string) >= 0)
            return bad(L, "%s: the name is given twice", where);
        cf_leaf *lf = &c->leaves[c->n_leaves];
        lf->name = e->string;
        lf->value = parse_tensor(L, e, where, &lf->requires_grad);
        if (!lf->value)
            return false;
        c->n_leaves++;
    }
    return true;
}

/* A symbol by name: a leaf, or a node before node `before`. */
static bool resolve(loader *L, const cJSON *j, int before, const char *where,
                    int *sym)
{
    const cf_case *c = L->c;
    if (!cJSON_IsString(j))
        return bad(L, "%s: must name a tensor or an earlier node, got %s",
                   where, json_type(j));
    int i = cf_leaf_index(c, j->valuestring);
    if (i >= 0) {
        *sym = i;
        return true;
    }
    for (int k = 0; k < before; k++)
        if (strcmp(c->nodes[k].name, j->valuestring) == 0) {
            *sym = c->n_leaves + k;
            return true;
        }
    return bad(L, "%s: \"%s\" is not a tensor or an earlier node", where,
               j->valuestring);
}

static int input_slot(const yk_op_def *op, const char *name)
{
    for (int i = 0; i < op->n_inputs; i++)
        if (strcmp(op->input_names[i], name) == 0)
            return i;
    return -1;
}

static const yk_attr_value *attr_of(const cf_node *nd, const char *name)
{
    for (int k = 0; k < nd->op->n_attrs; k++)
        if (strcmp(nd->op->attrs[k].name, name) == 0)
            return &nd->attrs[k];
    return NULL;
}

/* A variadic op's one input: a list of names. */
static bool parse_variadic(loader *L, cf_node *nd, int j, const cJSON *list,
                           const char *where)
{
    if (!cJSON_IsArray(list))
        return bad(L, "%s: must be a list of names, got %s", where,
                   json_type(list));
    int n = cJSON_GetArraySize(list);
    nd->in = calloc((size_t)(n ? n : 1), sizeof *nd->in);
    if (!nd->in)
        return bad(L, "out of memory");
    int k = 0;
    for (const cJSON *e = list->child; e; e = e->next, k++) {
        char w[200];
        snprintf(w, sizeof w, "%.180s[%d]", where, k);
        if (!resolve(L, e, j, w, &nd->in[k]))
            return false;
    }
    nd->n_in = n;
    return true;
}

static bool parse_inputs(loader *L, cf_node *nd, int j, const cJSON *ins,
                         const char *where)
{
    const yk_op_def *op = nd->op;
    char w[200];
    snprintf(w, sizeof w, "%.150s.inputs", where);
    if (!cJSON_IsObject(ins))
        return bad(L, "%s: must be an object of named inputs, got %s", w,
                   json_type(ins));
    for (const cJSON *e = ins->child; e; e = e->next)
        if (input_slot(op, e->string) < 0) {
            char list[256] = "";
            for (int i = 0; i < op->n_inputs; i++)
                append_name(list, sizeof list, op->input_names[i]);
            return bad(L, "%s: op \"%s\" has no input \"%s\" (its inputs: %s)",
                       w, op->name, e->string, list);
        }
    if (!no_duplicates(L, ins, w))
        return false;
    if (op->variadic) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(
            ins, op->input_names[0]);
        snprintf(w, sizeof w, "%.150s.inputs.%s", where, op->input_names[0]);
        if (!list)
            return bad(L, "%s: missing (op \"%s\" needs it)", w, op->name);
        return parse_variadic(L, nd, j, list, w);
    }
    nd->in = calloc((size_t)(op->n_inputs ? op->n_inputs : 1),
                    sizeof *nd->in);
    if (!nd->in)
        return bad(L, "out of memory");
    nd->n_in = op->n_inputs;
    for (int i = 0; i < op->n_inputs; i++) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(ins,
                                                          op->input_names[i]);
        bool optional = op->optional_inputs >> i & 1u;
        snprintf(w, sizeof w, "%.150s.inputs.%s", where, op->input_names[i]);
        nd->in[i] = -1;
        if ((!e || cJSON_IsNull(e)) && !optional)
            return bad(L, "%s: missing (op \"%s\" needs it)", w, op->name);
        if (e && !cJSON_IsNull(e) && !resolve(L, e, j, w, &nd->in[i]))
            return false;
    }
    return true;
}

/* One attribute's value as its spec says. */
static bool parse_attr(loader *L, const yk_attr_spec *sp, const cJSON *e,
                       const char *where, yk_attr_value *v)
{
    memset(v, 0, sizeof *v);
    if (cJSON_IsNull(e)) {
        if (!sp->nullable)
            return bad(L, "%s: cannot be null", where);
        v->is_null = true;
        return true;
    }
    switch (sp->type) {
    case YK_ATTR_INT: /* INT64_MIN is the ops' "none" (YK_NO_PADDING) */
        if (!get_int(e, -INT64_MAX, INT64_MAX, &v->i))
            return bad(L, "%s: must be an integer%s, got %s", where,
                       sp->nullable ? " or null" : "", json_type(e));
        return true;
    case YK_ATTR_BOOL:
        if (!cJSON_IsBool(e))
            return bad(L, "%s: must be true or false, got %s", where,
                       json_type(e));
        v->i = cJSON_IsTrue(e);
        return true;
    case YK_ATTR_STRING:
        if (!cJSON_IsString(e))
            return bad(L, "%s: must be a string, got %s", where, json_type(e));
        v->s = e->valuestring;
        return true;
    case YK_ATTR_DIMS:
        if (cJSON_IsNumber(e)) {
            v->n = 1;
            if (!get_int(e, INT64_MIN, INT64_MAX, &v->list[0]))
                return bad(L, "%s: must be a whole number", where);
            return true;
        }
        /* fall through - a list, as INT_LIST */
    case YK_ATTR_INT_LIST:
        if (!cJSON_IsArray(e))
            return bad(L, "%s: must be a list of integers%s, got %s", where,
                       sp->type == YK_ATTR_DIMS ? " or an integer" : "",
                       json_type(e));
        if (cJSON_GetArraySize(e) > YK_MAX_DIMS)
            return bad(L, "%s: has %d entries, at most %d are supported",
                       where, cJSON_GetArraySize(e), YK_MAX_DIMS);
        for (const cJSON *x = e->child; x; x = x->next, v->n++)
            if (!get_int(x, INT64_MIN, INT64_MAX, &v->list[v->n]))
                return bad(L, "%s[%d]: must be an integer, got %s", where,
                           v->n, json_type(x));
        return true;
    }
    return bad(L, "%s: attribute type %d is unknown to this tool", where,
               (int)sp->type);
}

/* The default of an attribute left out: null for a nullable one. */
static void attr_default(const yk_attr_spec *sp, yk_attr_value *v)
{
    memset(v, 0, sizeof *v);
    v->is_null = sp->nullable;
    v->i = sp->def_int;
    v->s = sp->def_string;
}

static bool parse_attrs(loader *L, cf_node *nd, const cJSON *attrs,
                        const char *where)
{
    const yk_op_def *op = nd->op;
    char w[200];
    snprintf(w, sizeof w, "%.150s.attrs", where);
    if (attrs && !cJSON_IsObject(attrs))
        return bad(L, "%s: must be an object, got %s", w, json_type(attrs));
    for (const cJSON *e = attrs ? attrs->child : NULL; e; e = e->next) {
        int k = 0;
        while (k < op->n_attrs && strcmp(op->attrs[k].name, e->string) != 0)
            k++;
        if (k == op->n_attrs) {
            char list[256] = "";
            for (int i = 0; i < op->n_attrs; i++)
                append_name(list, sizeof list, op->attrs[i].name);
            return bad(L, "%s: op \"%s\" has no attribute \"%s\" (%s%s)", w,
                       op->name, e->string, op->n_attrs ? "its attributes: " :
                       "it has none", list);
        }
    }
    if (attrs && !no_duplicates(L, attrs, w))
        return false;
    for (int k = 0; k < op->n_attrs; k++) {
        const yk_attr_spec *sp = &op->attrs[k];
        const cJSON *e = attrs ? cJSON_GetObjectItemCaseSensitive(attrs,
                                                                  sp->name)
                               : NULL;
        snprintf(w, sizeof w, "%.150s.attrs.%s", where, sp->name);
        if (!e && sp->required)
            return bad(L, "%s: missing (op \"%s\" has no default for it)", w,
                       op->name);
        if (!e)
            attr_default(sp, &nd->attrs[k]);
        else if (!parse_attr(L, sp, e, w, &nd->attrs[k]))
            return false;
    }
    return true;
}

static bool parse_node(loader *L, int j, const cJSON *e)
{
    static const char *const keys[] = {"name", "op", "inputs", "attrs", NULL};
    cf_case *c = L->c;
    cf_node *nd = &c->nodes[j];
    char where[200];
    snprintf(where, sizeof where, "nodes[%d]", j);
    if (!cJSON_IsObject(e))
        return bad(L, "%s: must be an object {\"name\", \"op\", \"inputs\"}, "
                   "got %s", where, json_type(e));
    if (!keys_ok(L, e, where, keys))
        return false;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(e, "op");
    if (!cJSON_IsString(name) || !name->valuestring[0])
        return bad(L, "%s.name: must be a non-empty string, got %s", where,
                   json_type(name));
    snprintf(where, sizeof where, "nodes[%d] (\"%s\")", j, name->valuestring);
    if (cf_leaf_index(c, name->valuestring) >= 0 ||
        cf_node_index(c, name->valuestring) >= 0)
        return bad(L, "%s: the name is already used by a tensor or a node",
                   where);
    if (!cJSON_IsString(op))
        return bad(L, "%s.op: must be an op name, got %s", where,
                   json_type(op));
    nd->op = L->lookup(op->valuestring);
    if (!nd->op)
        return bad(L, "%s.op: unknown op \"%s\"", where, op->valuestring);
    /* A registered op with no build function is not implemented yet: its
     * inputs cannot be named, and evaluation says not_implemented. */
    if (nd->op->build &&
        (!parse_inputs(L, nd, j, cJSON_GetObjectItemCaseSensitive(e, "inputs"),
                       where) ||
         !parse_attrs(L, nd, cJSON_GetObjectItemCaseSensitive(e, "attrs"),
                      where)))
        return false;
    nd->name = name->valuestring; /* set last: earlier nodes only resolve */
    return true;
}

static bool parse_nodes(loader *L, const cJSON *j)
{
    cf_case *c = L->c;
    if (!cJSON_IsArray(j))
        return bad(L, "nodes: must be a list of nodes, got %s", json_type(j));
    int n = cJSON_GetArraySize(j);
    c->nodes = calloc((size_t)(n ? n : 1), sizeof *c->nodes);
    if (!c->nodes)
        return bad(L, "out of memory");
    int k = 0;
    for (const cJSON *e = j->child; e; e = e->next, k++) {
        c->n_nodes = k + 1; /* so that cf_free frees a half-made node */
        if (!parse_node(L, k, e))
            return false;
    }
    c->n_nodes = k;
    return true;
}

/* An object of tensors named after nodes (leaves = false) or requires_grad
 * leaves (leaves = true). */
static bool parse_named(loader *L, const cJSON *j, const char *where,
                        bool leaves, cf_named **out, int *count)
{
    cf_case *c = L->c;
    if (!cJSON_IsObject(j))
        return bad(L, "%s: must be an object of named tensors, got %s", where,
                   json_type(j));
    int n = cJSON_GetArraySize(j);
    *out = calloc((size_t)(n ? n : 1), sizeof **out);
    if (!*out)
        return bad(L, "out of memory");
    if (!no_duplicates(L, j, where))
        return false;
    for (const cJSON *e = j->child; e; e = e->next) {
        char w[200];
        snprintf(w, sizeof w, "%s.%s", where, e->string);
        int idx = leaves ? cf_leaf_index(c, e->string)
                         : cf_node_index(c, e->string);
        if (idx < 0)
            return bad(L, "%s: there is no %s \"%s\"", w,
                       leaves ? "tensor" : "node", e->string);
        if (leaves && !c->leaves[idx].requires_grad)
            return bad(L, "%s: tensor \"%s\" does not require grad, so it "
                       "has no gradient", w, e->string);
        cf_named *nm = &(*out)[*count];
        nm->index = idx;
        nm->t = parse_tensor(L, e, w, NULL);
        if (!nm->t)
            return false;
        (*count)++;
    }
    return true;
}

/* expected.params: trained leaves only (the others do not change). */
static bool parse_expected_params(loader *L, const cJSON *j)
{
    cf_case *c = L->c;
    if (!parse_named(L, j, "expected.params", true, &c->params, &c->n_params))
        return false;
    for (int k = 0; k < c->n_params; k++) {
        const char *name = c->leaves[c->params[k].index].name;
        if (leaf_group(c, c->params[k].index) < 0)
            return bad(L, "expected.params.%s: tensor \"%s\" is in no "
                       "optimizer group, so it is not trained", name, name);
    }
    return true;
}

static bool parse_expected(loader *L, const cJSON *j)
{
    static const char *const keys[] = {"values", "grads", "params", "error",
                                       NULL};
    cf_case *c = L->c;
    if (!cJSON_IsObject(j))
        return bad(L, "expected: must be an object, got %s", json_type(j));
    if (!keys_ok(L, j, "expected", keys))
        return false;
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (err) {
        if (cJSON_GetArraySize(j) != 1)
            return bad(L, "expected: an \"error\" case expects nothing else");
        bool known = false;
        for (int s = YK_EINVAL; s <= YK_ENOTIMPL && cJSON_IsString(err); s++)
            known |= strcmp(err->valuestring, yk_status_name(s)) == 0;
        if (!known)
            return bad(L, "expected.error: must be an error category such as "
                       "\"index_out_of_range\", got %s%s%s",
                       cJSON_IsString(err) ? "\"" : json_type(err),
                       cJSON_IsString(err) ? err->valuestring : "",
                       cJSON_IsString(err) ? "\"" : "");
        c->expected_error = err->valuestring;
        return true;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "values");
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(j, "grads");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "params");
    if (p && !c->optimizer)
        return bad(L, "expected.params: only a case with an \"optimizer\" "
                   "has params after its steps");
    return (!v || parse_named(L, v, "expected.values", false, &c->values,
                              &c->n_values)) &&
           (!g || parse_named(L, g, "expected.grads", true, &c->grads,
                              &c->n_grads)) &&
           (!p || parse_expected_params(L, p));
}

static bool parse_tolerance(loader *L, const cJSON *j)
{
    static const char *const keys[] = {"rtol", "atol", NULL};
    if (!cJSON_IsObject(j))
        return bad(L, "tolerance: must be an object {\"rtol\", \"atol\"}, "
                   "got %s", json_type(j));
    if (!keys_ok(L, j, "tolerance", keys))
        return false;
    double *dst[2] = {&L->c->rtol, &L->c->atol};
    for (int i = 0; i < 2; i++) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, keys[i]);
        if (!e)
            continue;
        if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0))
            return bad(L, "tolerance.%s: must be a number >= 0, got %s",
                       keys[i], json_type(e));
        *dst[i] = e->valuedouble;
    }
    return true;
}

/* ------------------------------------------------------------- optimizer */

/* torch.optim's argument names that some optimizer here has, with the JSON
 * type of their value. */
typedef enum param_type { P_NUMBER, P_BOOL, P_PAIR } param_type;

static const struct {
    const char *name;
    param_type type;
} optim_params[] = {
    {"lr", P_NUMBER},       {"momentum", P_NUMBER}, {"dampening", P_NUMBER},
    {"nesterov", P_BOOL},   {"weight_decay", P_NUMBER}, {"betas", P_PAIR},
    {"eps", P_NUMBER},      {"amsgrad", P_BOOL},    {"lr_decay", P_NUMBER},
    {"initial_accumulator_value", P_NUMBER},
};
#define N_OPTIM_PARAMS ((int)(sizeof optim_params / sizeof optim_params[0]))

static int optim_param_index(const char *name)
{
    for (int i = 0; i < N_OPTIM_PARAMS; i++)
        if (strcmp(optim_params[i].name, name) == 0)
            return i;
    return -1;
}

/* The group a leaf is trained in, or -1. */
static int leaf_group(const cf_case *c, int leaf)
{
    for (int k = 0; k < c->n_groups; k++)
        for (int i = 0; i < c->groups[k].n_leaves; i++)
            if (c->groups[k].leaves[i] == leaf)
                return k;
    return -1;
}

/* JSON types only: a name no optimizer has, or a value torch refuses, is
 * the run's invalid_argument (case.h). */
static bool parse_group_params(loader *L, cf_group *gr, const cJSON *j,
                               const char *where)
{
    if (!cJSON_IsObject(j))
        return bad(L, "%s: must be an object of torch.optim arguments, got "
                   "%s", where, json_type(j));
    if (!no_duplicates(L, j, where))
        return false;
    for (const cJSON *e = j->child; e; e = e->next) {
        int k = optim_param_index(e->string);
        if (k < 0)
            continue;
        switch (optim_params[k].type) {
        case P_NUMBER:
            if (!cJSON_IsNumber(e))
                return bad(L, "%s.%s: must be a number, got %s", where,
                           e->string, json_type(e));
            break;
        case P_BOOL:
            if (!cJSON_IsBool(e))
                return bad(L, "%s.%s: must be true or false, got %s", where,
                           e->string, json_type(e));
            break;
        case P_PAIR:
            if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 ||
                !cJSON_IsNumber(e->child) || !cJSON_IsNumber(e->child->next))
                return bad(L, "%s.%s: must be a list of two numbers "
                           "[beta1, beta2], got %s", where, e->string,
                           cJSON_IsArray(e) ? "another list" : json_type(e));
            break;
        }
    }
    gr->params = j;
    return true;
}

/* owner[leaf]: the group that already has the leaf, or -1. */
static bool parse_group_leaves(loader *L, int k, const cJSON *j,
                               const char *where, int *owner)
{
    cf_group *gr = &L->c->groups[k];
    if (!cJSON_IsArray(j))
        return bad(L, "%s: must be a list of tensor names, got %s", where,
                   json_type(j));
    int n = cJSON_GetArraySize(j);
    gr->leaves = calloc((size_t)(n ? n : 1), sizeof *gr->leaves);
    if (!gr->leaves)
        return bad(L, "out of memory");
    for (const cJSON *e = j->child; e; e = e->next) {
        char w[200];
        snprintf(w, sizeof w, "%.150s[%d]", where, gr->n_leaves);
        if (!cJSON_IsString(e))
            return bad(L, "%s: must name a tensor, got %s", w, json_type(e));
        int i = cf_leaf_index(L->c, e->valuestring);
        if (i < 0)
            return bad(L, "%s: there is no tensor \"%s\"", w, e->valuestring);
        if (!L->c->leaves[i].requires_grad)
            return bad(L, "%s: tensor \"%s\" does not require grad, so an "
                       "optimizer cannot train it", w, e->valuestring);
        if (owner[i] >= 0)
            return bad(L, "%s: tensor \"%s\" is already in "
                       "optimizer.groups[%d]; a leaf is in at most one group",
                       w, e->valuestring, owner[i]);
        owner[i] = k;
        gr->leaves[gr->n_leaves++] = i;
    }
    return true;
}

static bool parse_group(loader *L, int k, const cJSON *j, int *owner)
{
    static const char *const keys[] = {"name", "leaves", "params", NULL};
    cf_group *gr = &L->c->groups[k];
    char where[64], w[96];
    snprintf(where, sizeof where, "optimizer.groups[%d]", k);
    if (!cJSON_IsObject(j))
        return bad(L, "%s: must be an object {\"name\", \"leaves\", "
                   "\"params\"}, got %s", where, json_type(j));
    if (!keys_ok(L, j, where, keys))
        return false;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name");
    if (!cJSON_IsString(name))
        return bad(L, "%s.name: must be an optimizer name such as \"adam\", "
                   "got %s", where, json_type(name));
    gr->optimizer = name->valuestring;
    const cJSON *leaves = cJSON_GetObjectItemCaseSensitive(j, "leaves");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(j, "params");
    snprintf(w, sizeof w, "%s.leaves", where);
    if (!leaves)
        return bad(L, "%s: missing (the tensors the group trains)", w);
    if (!parse_group_leaves(L, k, leaves, w, owner))
        return false;
    snprintf(w, sizeof w, "%s.params", where);
    return !params || parse_group_params(L, gr, params, w);
}

static bool parse_groups(loader *L, const cJSON *j)
{
    cf_case *c = L->c;
    if (!cJSON_IsArray(j))
        return bad(L, "optimizer.groups: must be a list of groups, got %s",
                   json_type(j));
    int n = cJSON_GetArraySize(j);
    c->groups = calloc((size_t)(n ? n : 1), sizeof *c->groups);
    int *owner = malloc((size_t)(c->n_leaves ? c->n_leaves : 1) *
                        sizeof *owner);
    bool ok = c->groups && owner;
    if (!ok)
        bad(L, "out of memory");
    for (int i = 0; ok && i < c->n_leaves; i++)
        owner[i] = -1;
    int k = 0;
    for (const cJSON *e = j->child; ok && e; e = e->next, k++) {
        c->n_groups = k + 1; /* so that cf_free frees a half-made group */
        ok = parse_group(L, k, e, owner);
    }
    free(owner);
    return ok;
}

/* One step's feed: leaves without requires_grad, each of its dtype. */
static bool parse_feed(loader *L, int k, const cJSON *j)
{
    cf_case *c = L->c;
    cf_feed *fd = &c->feeds[k];
    char where[64];
    snprintf(where, sizeof where, "optimizer.feeds[%d]", k);
    if (!cJSON_IsObject(j))
        return bad(L, "%s: must be an object of named tensors, got %s", where,
                   json_type(j));
    if (!no_duplicates(L, j, where))
        return false;
    int n = cJSON_GetArraySize(j);
    fd->t = calloc((size_t)(n ? n : 1), sizeof *fd->t);
    if (!fd->t)
        return bad(L, "out of memory");
    for (const cJSON *e = j->child; e; e = e->next) {
        char w[200];
        snprintf(w, sizeof w, "%s.%s", where, e->string);
        int i = cf_leaf_index(c, e->string);
        if (i < 0)
            return bad(L, "%s: there is no tensor \"%s\"", w, e->string);
        if (c->leaves[i].requires_grad)
            return bad(L, "%s: tensor \"%s\" requires grad; only leaves "
                       "without it (indices, offsets, inputs) are fed", w,
                       e->string);
        yk_tensor *t = parse_tensor(L, e, w, NULL);
        if (!t)
            return false;
        fd->t[fd->n].index = i;
        fd->t[fd->n++].t = t;
        yk_dtype want = yk_tensor_dtype(c->leaves[i].value);
        if (yk_tensor_dtype(t) != want)
            return bad(L, "%s: dtype %s, but tensor \"%s\" is %s (a fed "
                       "tensor keeps its dtype)", w,
                       yk_dtype_name(yk_tensor_dtype(t)), e->string,
                       yk_dtype_name(want));
    }
    return true;
}

static bool parse_feeds(loader *L, const cJSON *j)
{
    cf_case *c = L->c;
    if (!cJSON_IsArray(j))
        return bad(L, "optimizer.feeds: must be a list of one object a step, "
                   "got %s", json_type(j));
    if (cJSON_GetArraySize(j) != c->steps)
        return bad(L, "optimizer.feeds: has %d entries, but steps is %d (one "
                   "feed a step)", cJSON_GetArraySize(j), c->steps);
    c->feeds = calloc((size_t)c->steps, sizeof *c->feeds);
    if (!c->feeds)
        return bad(L, "out of memory");
    int k = 0;
    for (const cJSON *e = j->child; e; e = e->next, k++)
        if (!parse_feed(L, k, e))
            return false;
    return true;
}

static bool parse_optimizer(loader *L, const cJSON *j)
{
    static const char *const keys[] = {"steps", "groups", "feeds", NULL};
    cf_case *c = L->c;
    if (!cJSON_IsObject(j))
        return bad(L, "optimizer: must be an object {\"steps\", \"groups\"}, "
                   "got %s", json_type(j));
    if (!keys_ok(L, j, "optimizer", keys))
        return false;
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(j, "steps");
    int64_t n;
    if (!get_int(steps, 1, INT32_MAX, &n)) {
        if (cJSON_IsNumber(steps))
            return bad(L, "optimizer.steps: must be an integer >= 1, got %g",
                       steps->valuedouble);
        return bad(L, "optimizer.steps: must be an integer >= 1, got %s",
                   json_type(steps));
    }
    c->steps = (int)n;
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(j, "groups");
    if (!groups)
        return bad(L, "optimizer.groups: missing (a list of groups, each "
                   "{\"name\", \"leaves\", \"params\"})");
    const cJSON *feeds = cJSON_GetObjectItemCaseSensitive(j, "feeds");
    return parse_groups(L, groups) && (!feeds || parse_feeds(L, feeds));
}

static bool parse_case(loader *L)
{
    static const char *const keys[] = {"format", "name", "about", "tensors",
                                       "nodes", "seeds", "expected",
                                       "tolerance", "optimizer", NULL};
    cf_case *c = L->c;
    const cJSON *root = c->root;
    if (!cJSON_IsObject(root))
        return bad(L, "a case is a JSON object, got %s", json_type(root));
    if (!keys_ok(L, root, "case", keys))
        return false;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "yoke-case/1") != 0)
        return bad(L, "format: must be \"yoke-case/1\", got %s%s%s",
                   cJSON_IsString(fmt) ? "\"" : json_type(fmt),
                   cJSON_IsString(fmt) ? fmt->valuestring : "",
                   cJSON_IsString(fmt) ? "\"" : "");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
    if (!cJSON_IsString(name))
        return bad(L, "name: must be a string, got %s", json_type(name));
    c->name = name->valuestring;
    const cJSON *about = cJSON_GetObjectItemCaseSensitive(root, "about");
    if (about && !cJSON_IsString(about))
        return bad(L, "about: must be a string, got %s", json_type(about));
    c->optimizer = cJSON_GetObjectItemCaseSensitive(root, "optimizer");
    const cJSON *seeds = cJSON_GetObjectItemCaseSensitive(root, "seeds");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(root, "expected");
    const cJSON *tol = cJSON_GetObjectItemCaseSensitive(root, "tolerance");
    return parse_leaves(L, cJSON_GetObjectItemCaseSensitive(root, "tensors")) &&
           parse_nodes(L, cJSON_GetObjectItemCaseSensitive(root, "nodes")) &&
           (!seeds || parse_named(L, seeds, "seeds", false, &c->seeds,
                                  &c->n_seeds)) &&
           (!c->optimizer || parse_optimizer(L, c->optimizer)) &&
           (!exp || parse_expected(L, exp)) &&
           (!tol || parse_tolerance(L, tol));
}

cf_case *cf_from_json(cJSON *root, const char *origin, cf_op_lookup lookup,
                      char *err, size_t errlen)
{
    cf_case *c = calloc(1, sizeof *c);
    char *o = strdup(origin ? origin : "case");
    yk_ctx *ctx = yk_ctx_new();
    if (!c || !o || !ctx) {
        snprintf(err, errlen, "%s: out of memory", origin ? origin : "case");
        free(c);
        free(o);
        yk_ctx_free(ctx);
        cJSON_Delete(root);
        return NULL;
    }
    c->root = root;
    c->origin = o;
    c->ctx = ctx;
    c->rtol = c->atol = -1;
    c->steps = 1;
    loader L = {c, ctx, lookup ? lookup : yk_op_find, err, errlen};
    if (!parse_case(&L)) {
        cf_free(c);
        return NULL;
    }
    return c;
}

/* Line and column of a position in text, for JSON syntax errors. */
static void line_col(const char *text, const char *at, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (const char *p = text; p < at && *p; p++) {
        if (*p == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static char *read_file(const char *path, size_t *len, char *err,
                       size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *more = realloc(buf, cap * 2 + 1);
        if (!more) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = more;
        cap *= 2;
    }
    bool failed = ferror(f);
    fclose(f);
    if (!buf || failed) {
        snprintf(err, errlen, "%s: cannot read: %s", path,
                 buf ? strerror(errno) : "out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

cf_case *cf_load(const char *path, char *err, size_t errlen)
{
    size_t len = 0;
    char *text = read_file(path, &len, err, errlen);
    if (!text)
        return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root) {
        int line, col;
        line_col(text, end ? end : text, &line, &col);
        snprintf(err, errlen, "%s:%d:%d: not valid JSON (syntax error near "
                 "here, or nesting too deep)", path, line, col);
        free(text);
        return NULL;
    }
    /* Trailing non-space text is an error too. */
    while (end && end < text + len && strchr(" \t\r\n", *end))
        end++;
    if (end && end < text + len) {
        int line, col;
        line_col(text, end, &line, &col);
        snprintf(err, errlen, "%s:%d:%d: not valid JSON (text after the "
                 "case object)", path, line, col);
        cJSON_Delete(root);
        free(text);
        return NULL;
    }
    free(text);
    return cf_from_json(root, path, NULL, err, errlen);
}

static void free_named(cf_named *v, int n)
{
    for (int i = 0; v && i < n; i++)
        yk_tensor_free(v[i].t);
    free(v);
}

void cf_free(cf_case *c)
{
    if (!c)
        return;
    for (int i = 0; c->leaves && i < c->n_leaves; i++)
        yk_tensor_free(c->leaves[i].value);
    for (int j = 0; c->nodes && j < c->n_nodes; j++)
        free(c->nodes[j].in);
    free(c->leaves);
    free(c->nodes);
    free_named(c->seeds, c->n_seeds);
    free_named(c->values, c->n_values);
    free_named(c->grads, c->n_grads);
    free_named(c->params, c->n_params);
    for (int k = 0; c->groups && k < c->n_groups; k++)
        free(c->groups[k].leaves);
    free(c->groups);
    for (int k = 0; c->feeds && k < c->steps; k++)
        free_named(c->feeds[k].t, c->feeds[k].n);
    free(c->feeds);
    yk_ctx_free(c->ctx);
    cJSON_Delete(c->root);
    free((char *)c->origin);
    free(c);
}

const char *cf_unsupported(const cf_case *c)
{
    (void)c;
    return NULL;
}

/* ============================================================= sessions */

bool cf_session_init(cf_session *s, const cf_case *c, char *err,
                     size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->c = c;
    s->ctx = c->ctx;
    s->model = yk_model_new(c->ctx);
    s->params = calloc((size_t)c->n_leaves + 1, sizeof *s->params);
    s->inputs = calloc((size_t)c->n_leaves + 1, sizeof *s->inputs);
    s->optims = calloc((size_t)c->n_groups + 1, sizeof *s->optims);
    bool ok = s->model && s->params && s->inputs && s->optims;
    for (int i = 0; ok && i < c->n_leaves; i++) {
        const cf_leaf *lf = &c->leaves[i];
        s->inputs[i] = lf->value;
        if (!lf->requires_grad)
            continue;
        yk_param *p = yk_model_add(s->model, lf->name,
                                   yk_tensor_dtype(lf->value),
                                   yk_tensor_ndim(lf->value),
                                   yk_tensor_shape(lf->value));
        ok = p && yk_tensor_copy(yk_param_value(p), lf->value) == YK_OK;
        s->params[i] = p;
    }
    if (!ok) {
        snprintf(err, errlen, "%s: cannot make the model: %s", c->origin,
                 s->model ? yk_last_error(c->ctx) : "out of memory");
        cf_session_free(s);
    }
    return ok;
}

void cf_session_free(cf_session *s)
{
    for (int k = 0; s->optims && k < s->c->n_groups; k++)
        yk_optim_free(s->optims[k]); /* before the model they borrow from */
    free(s->optims);
    yk_model_free(s->model);
    free(s->params);
    free(s->inputs);
    memset(s, 0, sizeof *s);
}

void cf_session_feed(cf_session *s, int k)
{
    const cf_case *c = s->c;
    if (!c->feeds || k < 0 || k >= c->steps)
        return;
    for (int i = 0; i < c->feeds[k].n; i++)
        s->inputs[c->feeds[k].t[i].index] = c->feeds[k].t[i].t;
}

/* The status and message of a failed graph, prefixed with the node. */
static yk_status graph_error(cf_session *s, yk_graph *g, const char *node,
                             cf_result *r)
{
    yk_status st = yk_graph_status(g);
    if (st == YK_OK)
        st = yk_last_status(s->ctx);
    const char *msg = yk_last_error(s->ctx);
    if (st == YK_OK) {
        st = YK_EINVAL;
        msg = "the op returned NULL without an error";
    }
    r->status = st;
    if (node)
        snprintf(r->message, sizeof r->message, "node \"%s\": %s", node, msg);
    else
        snprintf(r->message, sizeof r->message, "%s", msg);
    return st;
}

static int max_inputs(const cf_case *c)
{
    int m = 0;
    for (int j = 0; j < c->n_nodes; j++)
        m = c->nodes[j].n_in > m ? c->nodes[j].n_in : m;
    return m;
}

/* Builds the case's graph in g; syms[k] is symbol k's node, followed by
 * room for the widest node's inputs. */
static yk_status build_graph(cf_session *s, yk_graph *g, yk_node **syms,
                             cf_result *r)
{
    const cf_case *c = s->c;
    int nl = c->n_leaves;
    yk_node **in = syms + nl + c->n_nodes;
    for (int i = 0; i < nl; i++) {
        syms[i] = s->params[i] ? yk_param_node(g, s->params[i])
                               : yk_const(g, s->inputs[i]);
        if (!syms[i])
            return graph_error(s, g, NULL, r);
    }
    for (int j = 0; j < c->n_nodes; j++) {
        const cf_node *nd = &c->nodes[j];
        if (!nd->op->build) {
            snprintf(r->message, sizeof r->message, "node \"%s\": op \"%s\" "
                     "is not implemented yet (its registry entry has no "
                     "build function)", nd->name, nd->op->name);
            return r->status = YK_ENOTIMPL;
        }
        for (int k = 0; k < nd->n_in; k++)
            in[k] = nd->in[k] < 0 ? NULL : syms[nd->in[k]];
        syms[nl + j] = nd->op->build(g, in, nd->n_in, nd->attrs);
        if (!syms[nl + j])
            return graph_error(s, g, nd->name, r);
    }
    return YK_OK;
}

static yk_node **alloc_syms(const cf_case *c)
{
    return calloc((size_t)(c->n_leaves + c->n_nodes + max_inputs(c) + 1),
                  sizeof(yk_node *));
}

static void result_error(cf_result *r, yk_status st, const char *msg)
{
    r->status = st;
    snprintf(r->message, sizeof r->message, "%s", msg);
}

/* The seeds times scale (the case's own tensors when scale is 1). */
static bool scaled_seeds(const cf_case *c, double scale, yk_tensor **out)
{
    for (int k = 0; k < c->n_seeds; k++) {
        if (scale == 1.0) {
            out[k] = c->seeds[k].t;
            continue;
        }
        out[k] = yk_tensor_clone(c->seeds[k].t);
        if (!out[k])
            return false;
        void *d = yk_tensor_data(out[k]);
        for (int64_t i = 0; i < yk_tensor_numel(out[k]); i++) {
            if (yk_tensor_dtype(out[k]) == YK_F32)
                ((float *)d)[i] = (float)(((float *)d)[i] * scale);
            else if (yk_tensor_dtype(out[k]) == YK_F64)
                ((double *)d)[i] *= scale;
        }
    }
    return true;
}

/* Every seeded node has its seed's shape: a feed may change shapes, but
 * not a seeded node's (case-format.md). Named here, by node, rather than
 * by the library's seed number. */
static yk_status seed_shapes(cf_session *s, yk_node **syms, cf_result *r)
{
    const cf_case *c = s->c;
    for (int k = 0; k < c->n_seeds; k++) {
        const yk_tensor *seed = c->seeds[k].t;
        yk_node *x = syms[c->n_leaves + c->seeds[k].index];
        int nd = yk_node_ndim(x);
        bool same = nd == yk_tensor_ndim(seed);
        for (int i = 0; same && i < nd; i++)
            same = yk_node_shape(x)[i] == yk_tensor_shape(seed)[i];
        if (same)
            continue;
        char a[96], b[96];
        int64_t shape[YK_MAX_DIMS];
        for (int i = 0; i < nd && i < YK_MAX_DIMS; i++)
            shape[i] = yk_node_shape(x)[i];
        format_shape(nd, shape, a, sizeof a);
        yk_shape_format(seed, b, sizeof b);
        snprintf(r->message, sizeof r->message, "node \"%s\" has shape %s, "
                 "but its seed has shape %s%s", c->nodes[c->seeds[k].index].name,
                 a, b, c->feeds ? " (a feed may change shapes only where "
                 "no seeded node's shape changes)" : "");
        return r->status = YK_ESHAPE;
    }
    return YK_OK;
}

static yk_status backward(cf_session *s, yk_graph *g, yk_node **syms,
                          double scale, cf_result *r)
{
    const cf_case *c = s->c;
    if (c->n_seeds <= 0)
        return YK_OK;
    if (seed_shapes(s, syms, r) != YK_OK)
        return r->status;
    yk_node **nodes = calloc((size_t)c->n_seeds, sizeof *nodes);
    yk_tensor **seeds = calloc((size_t)c->n_seeds, sizeof *seeds);
    yk_status st = YK_ENOMEM;
    if (nodes && seeds && scaled_seeds(c, scale, seeds)) {
        for (int k = 0; k < c->n_seeds; k++)
            nodes[k] = syms[c->n_leaves + c->seeds[k].index];
        st = yk_backward_seeded(g, c->n_seeds, nodes,
                                (const yk_tensor *const *)seeds);
        if (st != YK_OK)
            result_error(r, st, yk_last_error(s->ctx));
    } else {
        result_error(r, st, "out of memory while seeding backward");
    }
    for (int k = 0; seeds && scale != 1.0 && k < c->n_seeds; k++)
        yk_tensor_free(seeds[k]);
    free(seeds);
    free(nodes);
    return st;
}

static yk_status read_values(cf_session *s, yk_graph *g, yk_node **syms,
                             cf_result *r)
{
    const cf_case *c = s->c;
    for (int j = 0; j < c->n_nodes; j++) {
        const yk_tensor *v = yk_value(syms[c->n_leaves + j]);
        r->values[j] = v ? yk_tensor_clone(v) : NULL;
        if (!r->values[j])
            return graph_error(s, g, c->nodes[j].name, r);
    }
    return YK_OK;
}

static yk_status read_grads(cf_session *s, cf_result *r)
{
    const cf_case *c = s->c;
    for (int i = 0; i < c->n_leaves; i++) {
        yk_param *p = s->params[i];
        if (!p)
            continue;
        const yk_tensor *v = yk_param_value(p);
        r->grads[i] = yk_tensor_zeros(s->ctx, yk_tensor_dtype(v),
                                      yk_tensor_ndim(v), yk_tensor_shape(v));
        yk_status st = r->grads[i] ? yk_param_grad_to_dense(p, r->grads[i])
                                   : YK_ENOMEM;
        if (st != YK_OK) {
            result_error(r, st, yk_last_error(s->ctx));
            return st;
        }
    }
    return YK_OK;
}

/* Frees what an evaluation made, keeping status and message. */
static void drop_tensors(const cf_case *c, cf_result *r)
{
    for (int j = 0; r->values && j < c->n_nodes; j++)
        yk_tensor_free(r->values[j]);
    for (int i = 0; r->grads && i < c->n_leaves; i++)
        yk_tensor_free(r->grads[i]);
    for (int i = 0; r->params && i < c->n_leaves; i++)
        yk_tensor_free(r->params[i]);
    free(r->values);
    free(r->grads);
    free(r->params);
    r->values = NULL;
    r->grads = NULL;
    r->params = NULL;
}

void cf_eval(cf_session *s, double seed_scale, cf_result *r)
{
    const cf_case *c = s->c;
    memset(r, 0, sizeof *r);
    r->values = calloc((size_t)c->n_nodes + 1, sizeof *r->values);
    r->grads = calloc((size_t)c->n_leaves + 1, sizeof *r->grads);
    yk_node **syms = alloc_syms(c);
    yk_graph *g = yk_graph_begin(s->ctx);
    yk_model_zero_grad(s->model);
    yk_clear_error(s->ctx);
    if (!r->values || !r->grads || !syms || !g)
        result_error(r, YK_ENOMEM, "out of memory");
    else if (build_graph(s, g, syms, r) == YK_OK &&
             read_values(s, g, syms, r) == YK_OK &&
             backward(s, g, syms, seed_scale, r) == YK_OK)
        read_grads(s, r);
    yk_graph_end(g);
    free(syms);
    if (r->status != YK_OK)
        drop_tensors(c, r);
}

/* ------------------------------------------------------- optimizer steps */

__attribute__((format(printf, 3, 4)))
static yk_status run_error(cf_result *r, yk_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    return r->status = st;
}

/* Sets one params entry in *o (false: kind has no such parameter). "betas"
 * is torch's pair for the library's beta1 and beta2; the library's own
 * names beta1 and beta2 are not torch's, so they are unknown here. */
static bool set_param(yk_ctx *ctx, yk_optim_kind kind, yk_optim_opts *o,
                      const cJSON *e)
{
    int k = optim_param_index(e->string);
    if (k < 0)
        return false;
    switch (optim_params[k].type) {
    case P_PAIR:
        return yk_optim_opts_set(ctx, kind, o, "beta1",
                                 e->child->valuedouble) == YK_OK &&
               yk_optim_opts_set(ctx, kind, o, "beta2",
                                 e->child->next->valuedouble) == YK_OK;
    case P_BOOL:
        return yk_optim_opts_set(ctx, kind, o, e->string,
                                 cJSON_IsTrue(e)) == YK_OK;
    case P_NUMBER:
        break;
    }
    return yk_optim_opts_set(ctx, kind, o, e->string, e->valuedouble) ==
           YK_OK;
}

/* "lr", "betas", ...: the parameters kind has, for messages. */
static void kind_params(yk_ctx *ctx, yk_optim_kind kind, char *buf,
                        size_t size)
{
    buf[0] = '\0';
    for (int i = 0; i < N_OPTIM_PARAMS; i++) {
        yk_optim_opts scratch = yk_optim_defaults(kind);
        const char *name = optim_params[i].name;
        if (yk_optim_opts_set(ctx, kind, &scratch, optim_params[i].type ==
                              P_PAIR ? "beta1" : name, 0) == YK_OK)
            append_name(buf, size, name);
    }
    yk_clear_error(ctx);
}

/* The node that keeps leaf's gradient from being row-sparse, or -1: it is
 * row-sparse when every node that uses the leaf is an embedding or
 * embedding_bag with sparse true that takes it as weight (and only so). */
static int dense_use(const cf_case *c, int leaf)
{
    for (int j = 0; j < c->n_nodes; j++) {
        const cf_node *nd = &c->nodes[j];
        bool lookup = strcmp(nd->op->name, "embedding") == 0 ||
                      strcmp(nd->op->name, "embedding_bag") == 0;
        const yk_attr_value *sparse = attr_of(nd, "sparse");
        int weight = input_slot(nd->op, "weight");
        for (int k = 0; k < nd->n_in; k++)
            if (nd->in[k] == leaf &&
                (!lookup || !sparse || !sparse->i || k != weight))
                return j;
    }
    return -1;
}

/* Group k's optimizer from its name and params, its leaves added. */
static yk_status make_optimizer(cf_session *s, int k, cf_result *r)
{
    const cf_case *c = s->c;
    const cf_group *gr = &c->groups[k];
    char where[128], list[256];
    snprintf(where, sizeof where, "optimizer.groups[%d] (\"%.60s\")", k,
             gr->optimizer);
    yk_optim_kind kind;
    if (!yk_optim_kind_from_name(gr->optimizer, &kind))
        return run_error(r, YK_EINVAL, "%s: unknown optimizer \"%s\" (known: "
                         "sgd, adam, adamw, adagrad, sparse_adam, and yoke's "
                         "rowwise_adagrad)", where, gr->optimizer);
    yk_optim_opts o = yk_optim_defaults(kind);
    for (const cJSON *e = gr->params ? gr->params->child : NULL; e;
         e = e->next)
        if (!set_param(s->ctx, kind, &o, e)) {
            kind_params(s->ctx, kind, list, sizeof list);
            return run_error(r, YK_EINVAL, "%s: unknown parameter \"%s\" "
                             "(%s takes %s)", where, e->string,
                             yk_optim_kind_name(kind), list);
        }
    if (kind == YK_OPTIM_SPARSE_ADAM)
        for (int i = 0; i < gr->n_leaves; i++) {
            int j = dense_use(c, gr->leaves[i]);
            if (j >= 0)
                return run_error(r, YK_EINVAL, "%s: leaf \"%s\" needs a "
                                 "row-sparse gradient, but node \"%s\" (%s) "
                                 "makes it dense: only embedding or "
                                 "embedding_bag with sparse true, taking it as "
                                 "weight, give a row-sparse one", where,
                                 c->leaves[gr->leaves[i]].name,
                                 c->nodes[j].name, c->nodes[j].op->name);
        }
    s->optims[k] = yk_optim_new(s->ctx, kind, &o);
    if (!s->optims[k])
        return run_error(r, yk_last_status(s->ctx), "%s: %s", where,
                         yk_last_error(s->ctx));
    for (int i = 0; i < gr->n_leaves; i++)
        if (yk_optim_add(s->optims[k], s->params[gr->leaves[i]]) != YK_OK)
            return run_error(r, yk_last_status(s->ctx), "%s: %s", where,
                             yk_last_error(s->ctx));
    return YK_OK;
}

static yk_status step_optimizers(cf_session *s, cf_result *r)
{
    for (int k = 0; k < s->c->n_groups; k++)
        if (yk_optim_step(s->optims[k]) != YK_OK)
            return run_error(r, yk_last_status(s->ctx), "optimizer.groups[%d] "
                             "(\"%.60s\"): %s", k, s->c->groups[k].optimizer,
                             yk_last_error(s->ctx));
    return YK_OK;
}

/* The trained leaves' values, after the last step. */
static yk_status read_params(cf_session *s, cf_result *r)
{
    const cf_case *c = s->c;
    r->params = calloc((size_t)c->n_leaves + 1, sizeof *r->params);
    if (!r->params)
        return run_error(r, YK_ENOMEM, "out of memory");
    for (int i = 0; i < c->n_leaves; i++) {
        if (leaf_group(c, i) < 0)
            continue;
        r->params[i] = yk_tensor_clone(yk_param_value(s->params[i]));
        if (!r->params[i])
            return run_error(r, YK_ENOMEM, "out of memory");
    }
    return YK_OK;
}

/* Moves step k's error into r (which holds the first step), naming the
 * step when there are several. */
static void step_failed(const cf_case *c, int k, const cf_result *step,
                        cf_result *r)
{
    char msg[CF_MSG];
    snprintf(msg, sizeof msg, "%s", step->message);
    r->status = step->status;
    if (c->steps > 1)
        snprintf(r->message, sizeof r->message, "step %d of %d: %.460s", k + 1,
                 c->steps, msg);
    else
        snprintf(r->message, sizeof r->message, "%s", msg);
}

void cf_run(cf_session *s, cf_result *r)
{
    const cf_case *c = s->c;
    memset(r, 0, sizeof *r);
    cf_session_feed(s, 0);
    if (!c->optimizer) {
        cf_eval(s, 1.0, r);
        return;
    }
    yk_clear_error(s->ctx);
    for (int k = 0; k < c->n_groups; k++)
        if (make_optimizer(s, k, r) != YK_OK)
            return;
    for (int k = 0; k < c->steps; k++) {
        cf_result step, *sr = k == 0 ? r : &step;
        cf_session_feed(s, k);
        cf_eval(s, 1.0, sr);
        if (sr->status == YK_OK)
            step_optimizers(s, sr);
        yk_model_zero_grad(s->model);
        if (sr->status != YK_OK)
            step_failed(c, k, sr, r);
        if (sr != r)
            cf_result_free(c, sr);
        if (r->status != YK_OK) {
            drop_tensors(c, r);
            return;
        }
    }
    if (read_params(s, r) != YK_OK)
        drop_tensors(c, r);
}

void cf_result_free(const cf_case *c, cf_result *r)
{
    drop_tensors(c, r);
}

yk_status cf_loss(cf_session *s, double *loss)
{
    const cf_case *c = s->c;
    cf_result r;
    memset(&r, 0, sizeof r);
    yk_node **syms = alloc_syms(c);
    yk_graph *g = yk_graph_begin(s->ctx);
    if (!syms || !g) {
        yk_graph_end(g);
        free(syms);
        return YK_ENOMEM;
    }
    yk_graph_set_grad_enabled(g, false);
    yk_status st = build_graph(s, g, syms, &r);
    double L = 0;
    for (int k = 0; st == YK_OK && k < c->n_seeds; k++) {
        const yk_tensor *v = yk_value(syms[c->n_leaves + c->seeds[k].index]);
        const yk_tensor *seed = c->seeds[k].t;
        if (!v || yk_tensor_numel(v) != yk_tensor_numel(seed)) {
            st = v ? YK_ESHAPE : graph_error(s, g, NULL, &r);
            break;
        }
        for (int64_t i = 0; i < yk_tensor_numel(v); i++)
            L += yk_tensor_get(v, i) * yk_tensor_get(seed, i);
    }
    yk_graph_end(g);
    free(syms);
    *loss = L;
    return st;
}

/* ============================================================= printing */

void cf_print_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* The shortest decimal that reads back as the same f32 or f64; null for
 * NaN and infinities, which JSON cannot hold. */
void cf_print_number(FILE *f, double v, yk_dtype dt)
{
    if (!isfinite(v)) {
        fputs("null", f);
        return;
    }
    char buf[40];
    for (int p = dt == YK_F32 ? 6 : 15; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, v);
        double back = strtod(buf, NULL);
        if (dt == YK_F32 ? (float)back == (float)v : back == v)
            break;
    }
    fputs(buf, f);
}

void cf_print_tensor(FILE *f, const yk_tensor *t)
{
    yk_dtype dt = yk_tensor_dtype(t);
    fprintf(f, "{\"dtype\": \"%s\", \"shape\": [", yk_dtype_name(dt));
    for (int i = 0; i < yk_tensor_ndim(t); i++)
        fprintf(f, "%s%lld", i ? ", " : "", (long long)yk_tensor_shape(t)[i]);
    fputs("], \"data\": [", f);
    for (int64_t i = 0; i < yk_tensor_numel(t); i++) {
        if (i)
            fputs(", ", f);
        if (dt == YK_I64)
            fprintf(f, "%lld", (long long)((const int64_t *)
                                           yk_tensor_data(t))[i]);
        else
            cf_print_number(f, yk_tensor_get(t, i), dt);
    }
    fputs("]}", f);
}

void cf_print_result(FILE *f, const cf_case *c, const cf_result *r)
{
    fputs("{\"name\": ", f);
    cf_print_string(f, c->name);
    if (r->status != YK_OK) {
        fputs(", \"error\": ", f);
        cf_print_string(f, yk_status_name(r->status));
        fputs(", \"message\": ", f);
        cf_print_string(f, r->message);
        fputs("}\n", f);
        return;
    }
    fputs(",\n \"values\": {", f);
    for (int j = 0; j < c->n_nodes; j++) {
        fputs(j ? ",\n  " : "\n  ", f);
        cf_print_string(f, c->nodes[j].name);
        fputs(": ", f);
        cf_print_tensor(f, r->values[j]);
    }
    fputs("},\n \"grads\": {", f);
    bool first = true;
    for (int i = 0; i < c->n_leaves; i++) {
        if (!r->grads[i])
            continue;
        fputs(first ? "\n  " : ",\n  ", f);
        first = false;
        cf_print_string(f, c->leaves[i].name);
        fputs(": ", f);
        cf_print_tensor(f, r->grads[i]);
    }
    fputs("}", f);
    if (r->params) {
        fputs(",\n \"params\": {", f);
        first = true;
        for (int i = 0; i < c->n_leaves; i++) {
            if (!r->params[i])
                continue;
            fputs(first ? "\n  " : ",\n  ", f);
            first = false;
            cf_print_string(f, c->leaves[i].name);
            fputs(": ", f);
            cf_print_tensor(f, r->params[i]);
        }
        fputs("}", f);
    }
    fputs("}\n", f);
}

const char *cf_format_index(const yk_tensor *t, int64_t i, char *buf,
                            size_t size)
{
    int nd = yk_tensor_ndim(t);
    int64_t coord[YK_MAX_DIMS];
    for (int k = nd - 1; k >= 0; k--) {
        int64_t d = yk_tensor_shape(t)[k];
        coord[k] = d ? i % d : 0;
        i = d ? i / d : 0;
    }
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int k = 0; k < nd && n < size; k++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", k ? ", " : "",
                              (long long)coord[k]);
    if (n < size)
        snprintf(buf + n, size - n, "]");
    return buf;
}

/* ================================================================ checks */

__attribute__((format(printf, 2, 3)))
static void fail(cf_report *r, const char *fmt, ...)
{
    r->passed = false;
    if (r->n_failures < CF_MAX_FAILURES) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->failures[r->n_failures],
                  sizeof r->failures[r->n_failures], fmt, ap);
        va_end(ap);
    }
    r->n_failures++;
}

/* The case's tolerance, or the defaults of the expected tensor's dtype. */
static void tolerances(const cf_case *c, yk_dtype dt, double *rtol,
                       double *atol)
{
    bool f32 = dt == YK_F32;
    *rtol = c->rtol >= 0 ? c->rtol : f32 ? 1e-5 : 1e-10;
    *atol = c->atol >= 0 ? c->atol : f32 ? 1e-6 : 1e-12;
}

static bool same_shape(const yk_tensor *a, const yk_tensor *b)
{
    if (yk_tensor_ndim(a) != yk_tensor_ndim(b))
        return false;
    for (int i = 0; i < yk_tensor_ndim(a); i++)
        if (yk_tensor_shape(a)[i] != yk_tensor_shape(b)[i])
            return false;
    return true;
}

/* |got - want| <= atol + rtol |want| elementwise; one failure naming the
 * worst element and how many differ. */
static void compare_tensor(const cf_case *c, const char *kind,
                           const char *name, const yk_tensor *got,
                           const yk_tensor *want, int64_t *compared,
                           cf_report *r)
{
    char b1[96], b2[96];
    if (yk_tensor_dtype(got) != yk_tensor_dtype(want)) {
        fail(r, "%s \"%s\": dtype %s, expected %s", kind, name,
             yk_dtype_name(yk_tensor_dtype(got)),
             yk_dtype_name(yk_tensor_dtype(want)));
        return;
    }
    if (!same_shape(got, want)) {
        fail(r, "%s \"%s\": shape %s, expected %s", kind, name,
             yk_shape_format(got, b1, sizeof b1),
             yk_shape_format(want, b2, sizeof b2));
        return;
    }
    double rtol, atol;
    tolerances(c, yk_tensor_dtype(want), &rtol, &atol);
    int64_t n = yk_tensor_numel(want), n_bad = 0, worst = -1;
    double worst_excess = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = yk_tensor_get(got, i), e = yk_tensor_get(want, i);
        double excess = fabs(a - e) - (atol + rtol * fabs(e));
        if (isnan(excess))
            excess = INFINITY;
        if (excess > 0 && (n_bad++ == 0 || excess > worst_excess)) {
            worst = i;
            worst_excess = excess;
        }
    }
    *compared += n;
    if (n_bad)
        fail(r, "%s \"%s\"%s: got %.17g, expected %.17g (%lld of %lld "
             "elements differ by more than %g + %g * |expected|)", kind, name,
             cf_format_index(want, worst, b1, sizeof b1),
             yk_tensor_get(got, worst), yk_tensor_get(want, worst),
             (long long)n_bad, (long long)n, atol, rtol);
}

static void compare_expected(const cf_case *c, const cf_result *res,
                             cf_report *r)
{
    for (int k = 0; k < c->n_values; k++)
        compare_tensor(c, "value", c->nodes[c->values[k].index].name,
                       res->values[c->values[k].index], c->values[k].t,
                       &r->values_compared, r);
    for (int k = 0; k < c->n_grads; k++)
        compare_tensor(c, "grad", c->leaves[c->grads[k].index].name,
                       res->grads[c->grads[k].index], c->grads[k].t,
                       &r->grads_compared, r);
    for (int k = 0; k < c->n_params; k++)
        compare_tensor(c, "param", c->leaves[c->params[k].index].name,
                       res->params[c->params[k].index], c->params[k].t,
                       &r->params_compared, r);
}

/* Two backward passes must agree bit for bit, and a zero seed must give
 * zero gradients. */
static void compare_runs(const cf_case *c, const cf_result *a,
                         const cf_result *b, const cf_result *zero,
                         cf_report *r)
{
    for (int j = 0; j < c->n_nodes; j++)
        if (memcmp(yk_tensor_data(a->values[j]), yk_tensor_data(b->values[j]),
                   yk_tensor_nbytes(a->values[j])) != 0)
            fail(r, "two evaluations gave different values for node \"%s\"",
                 c->nodes[j].name);
    for (int i = 0; i < c->n_leaves; i++) {
        if (!a->grads[i])
            continue;
        const char *name = c->leaves[i].name;
        if (memcmp(yk_tensor_data(a->grads[i]), yk_tensor_data(b->grads[i]),
                   yk_tensor_nbytes(a->grads[i])) != 0)
            fail(r, "two backward passes gave different gradients for "
                 "\"%s\"", name);
        for (int64_t e = 0; e < yk_tensor_numel(zero->grads[i]); e++) {
            double v = yk_tensor_get(zero->grads[i], e);
            if (v != 0) {
                char w[96];
                fail(r, "a zero seed gave a non-zero gradient: \"%s\"%s = "
                     "%.17g", name, cf_format_index(zero->grads[i], e, w,
                                                    sizeof w), v);
                break;
            }
        }
    }
}

/* A kink (relu at 0, a tie in max) where the central difference failed:
 * the one-sided differences disagree, and by as much at a tenth of the
 * step (a smooth function's disagreement shrinks with the step). No
 * single number is the derivative there, and where several kinks meet
 * (ties in two bags) the analytic choice need not even lie between the
 * one-sided differences, so such an element is not checked. */
static yk_status is_kink(cf_session *s, double *v, int64_t i, double lp,
                         double lm, double L0, const cf_check_opts *o,
                         bool *kink)
{
    double h = o->eps / 10, saved = v[i], lp2, lm2;
    double jump = (lp - L0) / o->eps - (L0 - lm) / o->eps;
    double tol = o->atol + o->rtol * fmax(fabs(lp - L0), fabs(L0 - lm)) /
                 o->eps;
    *kink = false;
    if (!(fabs(jump) > tol))
        return YK_OK;
    v[i] = saved + h;
    yk_status e = cf_loss(s, &lp2);
    v[i] = saved - h;
    if (e == YK_OK)
        e = cf_loss(s, &lm2);
    v[i] = saved;
    if (e != YK_OK)
        return e;
    double jump2 = (lp2 - L0) / h - (L0 - lm2) / h;
    *kink = fabs(jump2) > 0.5 * fabs(jump);
    return YK_OK;
}

/* Nodes that take symbol sym as an input. */
static int uses_of(const cf_case *c, int sym)
{
    int n = 0;
    for (int j = 0; j < c->n_nodes; j++) {
        bool uses = false;
        for (int k = 0; k < c->nodes[j].n_in; k++)
            uses |= c->nodes[j].in[k] == sym;
        n += uses;
    }
    return n;
}

/* Does the embedding node read the leaf's rows: as its weight, or as a
 * part of a column cat that is its weight? */
static bool reads_rows(const cf_case *c, const cf_node *nd, int leaf)
{
    int w = nd->n_in > 1 ? nd->in[1] : -1; /* weight */
    if (w == leaf)
        return true;
    if (w < c->n_leaves)
        return false;
    const cf_node *cat = &c->nodes[w - c->n_leaves];
    const yk_attr_value *dim = attr_of(cat, "dim");
    bool column = strcmp(cat->op->name, "cat") == 0 && dim &&
                  (dim->i == 1 || dim->i == -1);
    for (int m = 0; column && m < cat->n_in; m++)
        if (cat->in[m] == leaf)
            return true;
    return false;
}

static int64_t count_row(const yk_tensor *idx, int64_t row)
{
    int64_t n = 0;
    for (int64_t i = 0; i < yk_tensor_numel(idx); i++)
        n += ((const int64_t *)yk_tensor_data(idx))[i] == row;
    return n;
}

/*
 * Where case-format.md makes a leaf row's gradient differ from the
 * derivative on purpose. Returns false when the row cannot be checked by
 * differences: embedding's padding_idx row (read, yet given no gradient),
 * or a row that a scale_grad_by_freq lookup reads from a leaf that has
 * other uses too (the scaled and unscaled parts cannot be told apart).
 * Otherwise *factor is what the derivative is multiplied by: 1 / (the
 * row's count in the input) for a scale_grad_by_freq lookup that is the
 * leaf's only use, else 1.
 */
static bool fd_contract(const cf_session *s, int leaf, int64_t row,
                        double *factor)
{
    const cf_case *c = s->c;
    const yk_tensor *t = c->leaves[leaf].value;
    int64_t V = yk_tensor_ndim(t) ? yk_tensor_shape(t)[0] : 0;
    *factor = 1;
    for (int j = 0; j < c->n_nodes; j++) {
        const cf_node *nd = &c->nodes[j];
        bool embedding = strcmp(nd->op->name, "embedding") == 0;
        if ((!embedding && strcmp(nd->op->name, "embedding_bag") != 0) ||
            !reads_rows(c, nd, leaf))
            continue;
        const yk_attr_value *pad = attr_of(nd, "padding_idx");
        if (embedding && pad && !pad->is_null &&
            (pad->i < 0 ? pad->i + V : pad->i) == row)
            return false;
        const yk_attr_value *freq = attr_of(nd, "scale_grad_by_freq");
        if (!freq || !freq->i)
            continue;
        if (nd->in[0] < 0 || nd->in[0] >= c->n_leaves)
            return false; /* indices are always leaves; be safe */
        int64_t n = count_row(s->inputs[nd->in[0]], row); /* as fed */
        if (n == 0)
            continue; /* this lookup sends the row nothing */
        if (nd->in[1] != leaf || uses_of(c, leaf) != 1)
            return false;
        *factor = 1.0 / (double)n;
    }
    return true;
}

typedef struct fd_state {
    bool have_L0;
    double L0;
    int64_t n_bad, n_kink_fail;
    cf_worst kink; /* first kink, reported in strict mode */
} fd_state;

static void keep_worst(cf_worst *w, const char *leaf, const yk_tensor *t,
                       int64_t i, double an, double num, double ratio)
{
    if (w->have && !(ratio > w->ratio))
        return;
    w->have = true;
    snprintf(w->leaf, sizeof w->leaf, "%s", leaf);
    cf_format_index(t, i, w->where, sizeof w->where);
    w->index = i;
    w->analytic = an;
    w->numeric = num;
    w->error = fabs(an - num);
    w->ratio = ratio;
}

/* Checks element i of a leaf's f64 value v against central differences. */
static yk_status fd_element(cf_session *s, const cf_check_opts *o,
                            const char *leaf, const yk_tensor *grad,
                            double *v, int64_t i, double factor, fd_state *st,
                            cf_report *r)
{
    double saved = v[i], lp, lm;
    v[i] = saved + o->eps;
    yk_status e = cf_loss(s, &lp);
    v[i] = saved - o->eps;
    if (e == YK_OK)
        e = cf_loss(s, &lm);
    v[i] = saved;
    if (e == YK_OK && !st->have_L0)
        e = cf_loss(s, &st->L0);
    if (e != YK_OK)
        return e;
    st->have_L0 = true;
    double an = ((const double *)yk_tensor_data(grad))[i];
    double num = factor * (lp - lm) / (2 * o->eps);
    double ratio = fabs(an - num) / (o->atol + o->rtol * fabs(num));
    if (isnan(ratio))
        ratio = INFINITY;
    bool kink = false;
    if (ratio > 1 && isfinite(ratio) &&
        (e = is_kink(s, v, i, lp, lm, st->L0, o, &kink)) != YK_OK)
        return e;
    if (kink) {
        r->fd_kinks++;
        if (o->strict && st->n_kink_fail++ == 0)
            keep_worst(&st->kink, leaf, grad, i, an, num, ratio);
        return YK_OK;
    }
    r->fd_checked++;
    if (ratio > 1)
        st->n_bad++;
    keep_worst(&r->worst, leaf, grad, i, an, num, ratio);
    return YK_OK;
}

/* Every element of every f64 requires_grad leaf against central
 * differences of L; leaves f32 alone (too coarse for differences). */
static void fd_check(cf_session *s, const cf_result *res,
                     const cf_check_opts *o, cf_report *r)
{
    const cf_case *c = s->c;
    fd_state st = {0};
    for (int i = 0; i < c->n_leaves; i++) {
        yk_param *p = s->params[i];
        const yk_tensor *t = p ? yk_param_value(p) : NULL;
        if (!t || yk_tensor_dtype(t) != YK_F64)
            continue;
        double *v = yk_tensor_data(t);
        int64_t n = yk_tensor_numel(t);
        int64_t rowlen = yk_tensor_ndim(t) && yk_tensor_shape(t)[0]
                             ? n / yk_tensor_shape(t)[0] : 1;
        for (int64_t e = 0; e < n; e++) {
            double factor;
            if (!fd_contract(s, i, e / rowlen, &factor)) {
                r->fd_exempt++;
                continue;
            }
            yk_status err = fd_element(s, o, c->leaves[i].name, res->grads[i],
                                       v, e, factor, &st, r);
            if (err != YK_OK) {
                fail(r, "finite differences: evaluation failed with %s: %s",
                     yk_status_name(err), yk_last_error(s->ctx));
                return;
            }
        }
    }
    const cf_worst *w = &r->worst;
    if (st.n_bad)
        fail(r, "analytic gradient differs from finite differences in %lld "
             "of %lld elements; worst \"%s\"%s (flat %lld): analytic %.10g, "
             "numeric %.10g, |difference| %.3g = %.3g times the tolerance",
             (long long)st.n_bad, (long long)r->fd_checked, w->leaf,
             w->where, (long long)w->index, w->analytic, w->numeric,
             w->error, w->ratio);
    if (st.n_kink_fail)
        fail(r, "%lld elements sit at non-differentiable points (the one-"
             "sided differences disagree), e.g. \"%s\"%s: analytic %.10g, "
             "central %.10g; generated inputs must avoid them",
             (long long)st.n_kink_fail, st.kink.leaf, st.kink.where,
             st.kink.analytic, st.kink.numeric);
}

static cf_check_opts check_defaults(const cf_check_opts *o)
{
    cf_check_opts d = {1e-6, 1e-5, 1e-3, false};
    if (o) {
        d.strict = o->strict;
        if (o->eps > 0) d.eps = o->eps;
        if (o->atol > 0) d.atol = o->atol;
        if (o->rtol > 0) d.rtol = o->rtol;
    }
    return d;
}

/* The expected error category, or what went wrong instead. */
static void check_error(const cf_case *c, const cf_result *res, cf_report *r)
{
    if (res->status == YK_OK)
        fail(r, "expected error %s, but evaluation succeeded",
             c->expected_error);
    else if (strcmp(yk_status_name(res->status), c->expected_error) != 0)
        fail(r, "expected error %s, got %s: %s", c->expected_error,
             yk_status_name(res->status), res->message);
    else if (!res->message[0])
        fail(r, "error %s comes without a message", c->expected_error);
}

/* The checks that need the gradients: repeatability and differences. */
static void check_grads(cf_session *s, const cf_result *r1,
                        const cf_check_opts *o, cf_report *r)
{
    cf_result r2, r0;
    cf_eval(s, 1.0, &r2);
    cf_eval(s, 0.0, &r0);
    if (r2.status != YK_OK || r0.status != YK_OK)
        fail(r, "a second evaluation failed with %s: %s",
             yk_status_name(r2.status ? r2.status : r0.status),
             r2.status ? r2.message : r0.message);
    else
        compare_runs(s->c, r1, &r2, &r0, r);
    cf_result_free(s->c, &r2);
    cf_result_free(s->c, &r0);
    fd_check(s, r1, o, r);
}

void cf_check(const cf_case *c, const cf_check_opts *opts, cf_report *r)
{
    memset(r, 0, sizeof *r);
    r->passed = true;
    cf_check_opts o = check_defaults(opts);
    cf_session s;
    char err[CF_MSG];
    if (!cf_session_init(&s, c, err, sizeof err)) {
        fail(r, "%s", err);
        return;
    }
    cf_result r1;
    cf_run(&s, &r1);
    /* The gradient checks are of the first step: a fresh session, the
     * leaves as given and feeds[0]. */
    cf_session_free(&s);
    if (r1.status != YK_OK)
        snprintf(r->error, sizeof r->error, "%s: %s",
                 yk_status_name(r1.status), r1.message);
    if (c->expected_error) {
        check_error(c, &r1, r);
    } else if (r1.status != YK_OK) {
        fail(r, "evaluation failed with %s", r->error);
    } else {
        compare_expected(c, &r1, r);
        if (c->n_seeds > 0 && !cf_session_init(&s, c, err, sizeof err)) {
            fail(r, "%s", err);
        } else if (c->n_seeds > 0) {
            cf_session_feed(&s, 0);
            check_grads(&s, &r1, &o, r);
            cf_session_free(&s);
        }
    }
    cf_result_free(c, &r1);
}
