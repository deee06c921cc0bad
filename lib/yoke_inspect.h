/*
 * yoke_inspect.h -- seeing a graph and its ties (included by yoke.h).
 *
 * WALKING A GRAPH. Nodes are numbered 0, 1, ... in creation order, which is
 * a topological order: every input of a node has a smaller id.
 *
 *     for (int64_t i = 0; i < yk_graph_node_count(g); i++) {
 *         yk_node *x = yk_graph_node_at(g, i);
 *         printf("#%lld %s\n", (long long)yk_node_id(x), yk_node_op_name(x));
 *     }
 *
 * DUMPS. yk_graph_dump_dot writes Graphviz DOT (render it with
 * tools/graph_svg.sh, or `dot -Tsvg`); yk_graph_dump_json returns the same
 * graph as JSON:
 *
 *     {"status": "ok", "backward_done": true,
 *      "nodes":  [{"id": 0, "op": "param", "param": "W", "dtype": "f32",
 *                  "shape": [1000, 128], "requires_grad": true,
 *                  "lazy": false, "inputs": []}, ...],
 *      "edges":  [{"from": 0, "to": 3, "input": "weight"}, ...],
 *      "params": [{"name": "W", "node": 0, "dtype": "f32",
 *                  "shape": [1000, 128], "requires_grad": true}, ...],
 *      "ties":   [{"param": "W", "node": 3, "op": "embedding",
 *                  "norm": 0.52, "via": []}, ...]}
 *
 * "param" is the parameter's name for a parameter leaf, null for other
 * nodes; "inputs" holds the input ids in argument order, null for an
 * absent optional input. An edge's "input" is the consumer's argument name (case-format names:
 * "input", "weight", "offsets", ...; "tensors[k]" for cat). Absent optional
 * inputs (embedding_bag without offsets) have no edge. "ties" is empty
 * unless the tie report was on.
 *
 * THE TIE REPORT. Weight tying in yoke is structural (one parameter, one
 * node per graph, one gradient), so "are these the same tensor?" is
 * yk_param_same. The tie report answers the next question: which ops used
 * the parameter in this step, and how much gradient did each send?
 *
 *     yk_graph *g = yk_graph_begin(ctx);
 *     yk_graph_set_tie_report(g, true);        // before yk_backward
 *     ...forward..., yk_backward(g, loss);
 *     yk_tie_report_print(g, stdout);
 *     // tie report: 2 parameters, 4 uses
 *     //   shared_embedding_matrix: 3 uses
 *     //     #2 embedding  |grad| = 0.0351496
 *     //     #5 embedding_bag  |grad| = 0.0379508
 *     //     #9 cat via #10 embedding_bag  |grad| = 0.036237
 *     //   separate_bag_embedding_matrix: 1 use
 *     //     #9 cat via #10 embedding_bag  |grad| = 0.0133412
 *
 * With the report on, backward keeps each use's gradient of a parameter
 * apart long enough to take its norm, then adds it in: the parameter's
 * gradient is the same as without the report, except that for uses with a
 * dense gradient (matmul, linear, elementwise ops) the sum may be formed in
 * another order (differences of rounding only). It is a debugging mode: a
 * use sending row gradients costs a parameter-sized temporary buffer.
 *
 * A use is one op node: an op reading the parameter through two of its
 * inputs (yk_mul(g, w, w)) is one use. A parameter read through an op that
 * only rearranges it -- cat (the extended EmbeddingBag's [shared | extra]
 * table), reshape, narrow -- is used by that node; the report names the
 * ops that read it ("via", yk_node_consumers). A gradient seeded straight
 * into a parameter's node (yk_backward_seeded) is no op's use and is not
 * reported. Parameters that require no gradient have no uses.
 */
#ifndef YOKE_INSPECT_H
#define YOKE_INSPECT_H

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------- walking */

/** Number of nodes of g (0 for NULL). */
int64_t yk_graph_node_count(const yk_graph *g);
/** Node i of g, i in [0, count); NULL for NULL g or i out of range (no
 * error is set). */
yk_node *yk_graph_node_at(const yk_graph *g, int64_t i);
/** The node's id (its index in yk_graph_node_at), or -1 for NULL. */
int64_t yk_node_id(const yk_node *x);
/** Number of input slots of x (0 for leaves and NULL). */
int yk_node_n_inputs(const yk_node *x);
/** Input i of x, or NULL (i out of range, or an absent optional input). */
yk_node *yk_node_input(const yk_node *x, int i);
/** The argument name of input i of x ("weight", "tensors[1]", ...), written
 * into buf; "" when i is out of range. */
const char *yk_node_input_name(const yk_node *x, int i, char *buf,
                               size_t size);
/** The parameter of a parameter leaf, else NULL. */
yk_param *yk_node_param(const yk_node *x);
/**
 * The nodes that read x (have it as an input), in id order: writes up to
 * max of them into out (out may be NULL when max is 0) and returns how many
 * there are in all (-1 for NULL x).
 */
int64_t yk_node_consumers(const yk_node *x, int64_t max, yk_node **out);

/* ---------------------------------------------------------- dumps */

/**
 * Writes g as a Graphviz digraph to f: one node per graph node (id, op or
 * parameter name, shape, dtype; parameters boxed, constants grey, nodes
 * that need no gradient dashed), one edge per input, labelled with the
 * argument name (and the use's gradient norm when the tie report has it).
 * Works on a graph that failed, too (it shows the nodes made so far).
 * Errors: YK_EINVAL for NULL g (no message: there is no context) or NULL
 * f; YK_EIO when writing fails.
 */
yk_status yk_graph_dump_dot(const yk_graph *g, FILE *f);

/**
 * g as JSON (see the top of this file), a NUL-terminated string allocated
 * through the context's allocator: free it with yk_string_free. NULL for
 * NULL g (no message), or NULL with YK_ENOMEM on the context.
 */
char *yk_graph_dump_json(const yk_graph *g);

/** Frees a string returned by this header's functions. NULL is a no-op. */
void yk_string_free(char *s);

/* ---------------------------------------------------------- tie report */

/**
 * Turns the tie report on or off for the next backward of g. YK_EINVAL for
 * NULL g (no message); YK_ESTATE when backward already ran on g (the
 * uses can no longer be told apart).
 */
yk_status yk_graph_set_tie_report(yk_graph *g, bool on);

/** One use of a parameter in the last backward of a graph. */
typedef struct yk_tie_use {
    yk_param *param;        /* the parameter                              */
    const char *param_name; /* its name                                   */
    yk_node *consumer;      /* the op node whose backward sent it ...     */
    int64_t node_id;        /* ... its id ...                             */
    const char *op;         /* ... and its op name                        */
    double norm;            /* Frobenius norm of the gradient this use
                             * sent to the parameter                      */
} yk_tie_use;

/** Number of uses recorded in g's backward (0 when the report was off,
 * backward has not run, or g is NULL). In consumer id order. */
int64_t yk_tie_count(const yk_graph *g);
/** Use i into *out. YK_EINVAL for NULL g (no message) or out; YK_ERANGE
 * for i outside [0, yk_tie_count(g)). */
yk_status yk_tie_at(const yk_graph *g, int64_t i, yk_tie_use *out);
/**
 * Prints the report to f, one line a use grouped by parameter, with how
 * many uses each parameter had; "tie report: nothing recorded" (and why)
 * when there is none. YK_EINVAL for NULL g or f, YK_EIO on a write error.
 */
yk_status yk_tie_report_print(const yk_graph *g, FILE *f);

#ifdef __cplusplus
}
#endif

#endif /* YOKE_INSPECT_H */
