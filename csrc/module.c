// fcnn._core: the Python binding of the kernels. The only file that sees PyObject:
// it parses and validates arguments, allocates outputs, releases the GIL and calls a kernel.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_2_0_API_VERSION
#include <numpy/arrayobject.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels.h"
#include "random.h"

// ----------------------------------------------------------------------------
// argument checking

// Calls kernel_f32 or kernel_f64 by the dtype of the call. Array data go in as void *,
// which C converts to float * or double * by itself.
#define DISPATCH(typenum, kernel, ...)                                     \
    do {                                                                   \
        if ((typenum) == NPY_FLOAT) {                                      \
            kernel##_f32(__VA_ARGS__);                                     \
        } else {                                                           \
            kernel##_f64(__VA_ARGS__);                                     \
        }                                                                  \
    } while (0)

// Brackets every kernel call: the GIL is released; fcnn's work runs with flush-to-zero and
// denormals-are-zero (threads.c), the caller's floating-point mode restored before the GIL is
// taken back; and the BLAS is held at one thread meanwhile, so that products are split across
// fcnn's own OpenMP threads, every one of them with FTZ/DAZ on (linear.c).
#define FCNN_BEGIN_KERNEL                                    \
    Py_BEGIN_ALLOW_THREADS unsigned saved_fp_mode = fcnn_fp_enter(); \
    fcnn_blas_scope_enter()
#define FCNN_END_KERNEL           \
    fcnn_blas_scope_leave();      \
    fcnn_fp_leave(saved_fp_mode); \
    Py_END_ALLOW_THREADS

// Room for the longest shape text: "(", NPY_MAXDIMS sizes of up to 20 digits and a sign,
// each after ", ", then ",)" and the terminating NUL.
#define SHAPE_TEXT_SIZE (NPY_MAXDIMS * 22 + 4)

// Writes "(2, 3, 4)" for a shape; a negative size (an expected size that may be anything)
// prints as "*". Never writes more than SHAPE_TEXT_SIZE bytes: should a shape not fit, the
// text ends in ", ...)".
static void shape_text(char *text, int ndim, const npy_intp *dims) {
    static const char ellipsis[] = ", ...)";
    size_t used = 0;
    text[used++] = '(';
    for (int d = 0; d < ndim; d++) {
        char item[32];
        int length = dims[d] < 0 ? snprintf(item, sizeof item, "%s*", d == 0 ? "" : ", ")
                                 : snprintf(item, sizeof item, "%s%zd", d == 0 ? "" : ", ",
                                            (Py_ssize_t)dims[d]);
        // Keep room for the ellipsis after every item, so it always fits when needed.
        if (length < 0 || used + (size_t)length + sizeof ellipsis > SHAPE_TEXT_SIZE) {
            memcpy(text + used, ellipsis, sizeof ellipsis);
            return;
        }
        memcpy(text + used, item, (size_t)length);
        used += (size_t)length;
    }
    memcpy(text + used, ndim == 1 ? ",)" : ")", ndim == 1 ? 3 : 2);
}

// The dtype as users write it ("int64"): formatted with %S in messages.
static PyObject *dtype_of(PyArrayObject *array) { return (PyObject *)PyArray_DESCR(array); }

// Checks that obj is a non-empty ndarray of ndim dimensions. typenum is the dtype the call
// requires, or -1 when obj is the argument that decides it (float32 or float64).
// ref_name names the argument that decided the dtype, for the message.
static int check_array(PyObject *obj, const char *name, int typenum, const char *ref_name,
                       int ndim) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray, got %s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyArrayObject *array = (PyArrayObject *)obj;
    int array_type = PyArray_TYPE(array);
    if (typenum < 0) {
        if (array_type != NPY_FLOAT && array_type != NPY_DOUBLE) {
            PyErr_Format(PyExc_TypeError, "%s must have dtype float32 or float64, got %S", name,
                         dtype_of(array));
            return -1;
        }
    } else if (array_type != typenum) {
        PyErr_Format(PyExc_TypeError, "%s must have dtype %s (the dtype of %s), got %S", name,
                     typenum == NPY_FLOAT ? "float32" : "float64", ref_name, dtype_of(array));
        return -1;
    }
    char text[SHAPE_TEXT_SIZE];
    shape_text(text, PyArray_NDIM(array), PyArray_DIMS(array));
    if (ndim > 0 && PyArray_NDIM(array) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must be %d-D, got %d-D array of shape %s", name, ndim,
                     PyArray_NDIM(array), text);
        return -1;
    }
    if (PyArray_SIZE(array) == 0) {
        PyErr_Format(PyExc_ValueError, "%s must not be empty, got shape %s", name, text);
        return -1;
    }
    for (int d = 0; d < PyArray_NDIM(array); d++) {
        if (PyArray_DIM(array, d) > FCNN_BLAS_MAX_SIZE) {
            PyErr_Format(PyExc_ValueError,
                         "%s is too large: dimension %d has %zd entries, the BLAS takes at "
                         "most %zd",
                         name, d, (Py_ssize_t)PyArray_DIM(array, d),
                         (Py_ssize_t)FCNN_BLAS_MAX_SIZE);
            return -1;
        }
    }
    return 0;
}

// A C-contiguous, aligned view or copy of a checked array (new reference).
static PyArrayObject *as_contiguous(PyObject *obj) {
    return (PyArrayObject *)PyArray_FROM_OTF(obj, PyArray_TYPE((PyArrayObject *)obj),
                                             NPY_ARRAY_IN_ARRAY);
}

// Checks and converts a float input: see check_array. Returns a new reference or NULL.
static PyArrayObject *float_input(PyObject *obj, const char *name, int typenum,
                                  const char *ref_name, int ndim) {
    if (check_array(obj, name, typenum, ref_name, ndim) < 0) return NULL;
    return as_contiguous(obj);
}

// Raises "name must have shape <expected> to match ref with shape <ref>, got <actual>".
// An expected dimension of -1 prints as "*".
static int require_shape(PyArrayObject *array, const char *name, int ndim,
                         const npy_intp *expected, const char *ref_name, PyArrayObject *ref) {
    int match = PyArray_NDIM(array) == ndim;
    for (int d = 0; match && d < ndim; d++) {
        match = expected[d] < 0 || PyArray_DIM(array, d) == expected[d];
    }
    if (match) return 0;
    char want[SHAPE_TEXT_SIZE], got[SHAPE_TEXT_SIZE], ref_text[SHAPE_TEXT_SIZE];
    shape_text(want, ndim, expected);
    shape_text(got, PyArray_NDIM(array), PyArray_DIMS(array));
    shape_text(ref_text, PyArray_NDIM(ref), PyArray_DIMS(ref));
    PyErr_Format(PyExc_ValueError, "%s must have shape %s to match %s with shape %s, got %s",
                 name, want, ref_name, ref_text, got);
    return -1;
}

// A 1-D integer array of values in [0, upper), converted to int64. length < 0: any length >= 1,
// else exactly length (to match ref_name).
static PyArrayObject *index_array(PyObject *obj, const char *name, npy_intp length,
                                  npy_intp upper, const char *ref_name, PyArrayObject *ref) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray, got %s", name,
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *array = (PyArrayObject *)obj;
    if (!PyArray_ISINTEGER(array)) {
        PyErr_Format(PyExc_TypeError, "%s must have an integer dtype, got %S", name,
                     dtype_of(array));
        return NULL;
    }
    if (length >= 0) {
        npy_intp expected[1] = {length};
        if (require_shape(array, name, 1, expected, ref_name, ref) < 0) return NULL;
    } else if (PyArray_NDIM(array) != 1 || PyArray_DIM(array, 0) == 0) {
        char text[SHAPE_TEXT_SIZE];
        shape_text(text, PyArray_NDIM(array), PyArray_DIMS(array));
        PyErr_Format(PyExc_ValueError, "%s must be a non-empty 1-D array, got shape %s", name,
                     text);
        return NULL;
    }
    // Unsigned values are checked as uint64 before the conversion to int64, which would turn
    // 2**64 - 1 into -1 (in the message too).
    int is_unsigned = PyArray_ISUNSIGNED(array);
    PyArrayObject *converted = (PyArrayObject *)PyArray_FROM_OTF(
        obj, is_unsigned ? NPY_UINT64 : NPY_INT64, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    if (converted == NULL) return NULL;
    const void *values = PyArray_DATA(converted);
    for (npy_intp i = 0; i < PyArray_DIM(converted, 0); i++) {
        if (is_unsigned) {
            uint64_t value = ((const uint64_t *)values)[i];
            if (value < (uint64_t)upper) continue;
            PyErr_Format(PyExc_ValueError, "%s must be in [0, %zd), got %llu at index %zd", name,
                         (Py_ssize_t)upper, (unsigned long long)value, (Py_ssize_t)i);
        } else {
            int64_t value = ((const int64_t *)values)[i];
            if (value >= 0 && value < upper) continue;
            PyErr_Format(PyExc_ValueError, "%s must be in [0, %zd), got %lld at index %zd", name,
                         (Py_ssize_t)upper, (long long)value, (Py_ssize_t)i);
        }
        Py_DECREF(converted);
        return NULL;
    }
    if (is_unsigned) {  // every value is below upper, so int64 holds it exactly
        PyArrayObject *signed_values = (PyArrayObject *)PyArray_FROM_OTF(
            (PyObject *)converted, NPY_INT64, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
        Py_DECREF(converted);
        converted = signed_values;
    }
    return converted;
}

// obj as a double, or a TypeError naming it; with refuse_bool, True and False are refused.
static int number_arg(PyObject *obj, const char *name, int refuse_bool, double *value) {
    if ((refuse_bool && PyBool_Check(obj)) || !PyNumber_Check(obj) || PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a real number, got %s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    *value = PyFloat_AsDouble(obj);
    if (*value == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a real number, got %s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    return 0;
}

// A finite, non-negative real number (lr, weight_decay, initial_lr).
static int real_arg(PyObject *obj, const char *name, double *value) {
    if (number_arg(obj, name, 0, value) < 0) return -1;
    if (!isfinite(*value) || *value < 0) {
        PyErr_Format(PyExc_ValueError, "%s must be finite and >= 0, got %R", name, obj);
        return -1;
    }
    return 0;
}

// The SGD rule's settings, each optional (NULL: left as it is): weight_decay a real_arg,
// momentum a real_arg below 1, and nesterov only with momentum > 0.
static int sgd_settings_args(PyObject *weight_decay_obj, PyObject *momentum_obj, int nesterov,
                             double *weight_decay, double *momentum) {
    if (weight_decay_obj != NULL && real_arg(weight_decay_obj, "weight_decay", weight_decay) < 0) {
        return -1;
    }
    if (momentum_obj != NULL && real_arg(momentum_obj, "momentum", momentum) < 0) return -1;
    if (*momentum >= 1) {
        PyErr_Format(PyExc_ValueError, "momentum must be in [0, 1), got %R", momentum_obj);
        return -1;
    }
    if (nesterov && *momentum == 0) {
        PyErr_SetString(PyExc_ValueError, "nesterov needs momentum > 0, got momentum 0");
        return -1;
    }
    return 0;
}

// An integer >= minimum (step, stage_length).
static int index_arg(PyObject *obj, const char *name, long long minimum, long long *value) {
    PyObject *index = PyNumber_Index(obj);
    if (index == NULL) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be an integer, got %s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow = 0;
    *value = PyLong_AsLongLongAndOverflow(index, &overflow);
    Py_DECREF(index);
    if (overflow != 0 || *value < minimum) {
        PyErr_Format(PyExc_ValueError, "%s must be an integer >= %lld, got %R", name, minimum,
                     obj);
        return -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// linear

static PyObject *linear_forward(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"x", "weight", "bias", NULL};
    PyObject *x_obj, *weight_obj, *bias_obj;
    PyArrayObject *x = NULL, *weight = NULL, *bias = NULL, *out = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO:linear_forward", kwlist, &x_obj,
                                     &weight_obj, &bias_obj)) {
        return NULL;
    }
    if ((x = float_input(x_obj, "x", -1, NULL, 2)) == NULL) goto fail;
    int typenum = PyArray_TYPE(x);
    if ((weight = float_input(weight_obj, "weight", typenum, "x", 2)) == NULL) goto fail;
    if ((bias = float_input(bias_obj, "bias", typenum, "x", 1)) == NULL) goto fail;
    npy_intp B = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1), OC = PyArray_DIM(weight, 1);
    npy_intp weight_shape[2] = {C, -1}, bias_shape[1] = {OC};
    if (require_shape(weight, "weight", 2, weight_shape, "x", x) < 0) goto fail;
    if (require_shape(bias, "bias", 1, bias_shape, "weight", weight) < 0) goto fail;
    npy_intp out_shape[2] = {B, OC};
    if ((out = (PyArrayObject *)PyArray_SimpleNew(2, out_shape, typenum)) == NULL) goto fail;
    FCNN_BEGIN_KERNEL;
    DISPATCH(typenum, fcnn_linear_forward, PyArray_DATA(out), PyArray_DATA(x),
             PyArray_DATA(weight), PyArray_DATA(bias), B, C, OC, fcnn_get_threads());
    FCNN_END_KERNEL;
    Py_DECREF(x);
    Py_DECREF(weight);
    Py_DECREF(bias);
    return (PyObject *)out;
fail:
    Py_XDECREF(x);
    Py_XDECREF(weight);
    Py_XDECREF(bias);
    Py_XDECREF(out);
    return NULL;
}

static PyObject *linear_backward(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"dout", "x", "weight", "compute_dx", NULL};
    PyObject *dout_obj, *x_obj, *weight_obj;
    int compute_dx = 1;
    PyArrayObject *dout = NULL, *x = NULL, *weight = NULL;
    PyArrayObject *dweight = NULL, *dbias = NULL, *dx = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|p:linear_backward", kwlist, &dout_obj,
                                     &x_obj, &weight_obj, &compute_dx)) {
        return NULL;
    }
    if ((dout = float_input(dout_obj, "dout", -1, NULL, 2)) == NULL) goto fail;
    int typenum = PyArray_TYPE(dout);
    if ((x = float_input(x_obj, "x", typenum, "dout", 2)) == NULL) goto fail;
    if ((weight = float_input(weight_obj, "weight", typenum, "dout", 2)) == NULL) goto fail;
    npy_intp B = PyArray_DIM(dout, 0), OC = PyArray_DIM(dout, 1), C = PyArray_DIM(x, 1);
    npy_intp x_shape[2] = {B, -1}, weight_shape[2] = {C, OC};
    if (require_shape(x, "x", 2, x_shape, "dout", dout) < 0) goto fail;
    if (require_shape(weight, "weight", 2, weight_shape, "x", x) < 0) goto fail;
    npy_intp dweight_shape[2] = {C, OC}, dbias_shape[1] = {OC}, dx_shape[2] = {B, C};
    dweight = (PyArrayObject *)PyArray_SimpleNew(2, dweight_shape, typenum);
    if (dweight == NULL) goto fail;
    if ((dbias = (PyArrayObject *)PyArray_SimpleNew(1, dbias_shape, typenum)) == NULL) goto fail;
    if (compute_dx &&
        (dx = (PyArrayObject *)PyArray_SimpleNew(2, dx_shape, typenum)) == NULL) {
        goto fail;
    }
    void *dx_data = dx == NULL ? NULL : PyArray_DATA(dx);
    FCNN_BEGIN_KERNEL;
    DISPATCH(typenum, fcnn_linear_backward, dx_data, PyArray_DATA(dweight), PyArray_DATA(dbias),
             PyArray_DATA(dout), PyArray_DATA(x), PyArray_DATA(weight), B, C, OC,
             fcnn_get_threads());
    FCNN_END_KERNEL;
    Py_DECREF(dout);
    Py_DECREF(x);
    Py_DECREF(weight);
    // "N" steals the references; a missing dx becomes None.
    return Py_BuildValue("NNN", dweight, dbias, dx == NULL ? Py_NewRef(Py_None) : (PyObject *)dx);
fail:
    Py_XDECREF(dout);
    Py_XDECREF(x);
    Py_XDECREF(weight);
    Py_XDECREF(dweight);
    Py_XDECREF(dbias);
    Py_XDECREF(dx);
    return NULL;
}

// ----------------------------------------------------------------------------
// activations: each takes one or two (B, C) arrays of one shape and returns one

// One row per activation. Each row makes the bindings <name>_forward(x) and
// <name>_backward(dout, <saved>) on the kernels fcnn_<name>_forward/backward_f32/_f64, and
// their entries in the method table: adding an activation is its kernels and one row here.
//   saved  what the backward takes besides dout: x (the forward's input) or the forward's
//          output (out, or probs for softmax)
//   sizes  how the kernels take the sizes: ELEMENTWISE (N = B * C) or ROWWISE (B, C)
#define FCNN_ACTIVATIONS(X)                                                                   \
    X(relu, x, ELEMENTWISE, "relu_forward(x) -> max(x, 0)",                                   \
      "relu_backward(dout, x) -> dout where x > 0, else 0")                                   \
    X(sigmoid, out, ELEMENTWISE, "sigmoid_forward(x) -> 1 / (1 + exp(-x)), overflow-free",    \
      "sigmoid_backward(dout, out) -> dout * out * (1 - out), out = sigmoid_forward(x)")      \
    X(tanh, out, ELEMENTWISE, "tanh_forward(x) -> tanh(x)",                                   \
      "tanh_backward(dout, out) -> dout * (1 - out**2), out = tanh_forward(x)")               \
    X(softmax, probs, ROWWISE, "softmax_forward(x) -> row-wise softmax",                      \
      "softmax_backward(dout, probs) -> softmax vector-Jacobian product")

#define ELEMENTWISE(B, C) (B) * (C)
#define ROWWISE(B, C) B, C

// An activation's kernels, [0] float32 and [1] float64, all called with (B, C).
typedef void (*activation_forward)(void *out, const void *inp, fcnn_size B, fcnn_size C);
typedef void (*activation_backward)(void *dinp, const void *dout, const void *saved,
                                    fcnn_size B, fcnn_size C);
typedef struct {
    const char *forward_format, *backward_format;  // "O:relu_forward", "OO:relu_backward"
    const char *saved_name;
    activation_forward forward[2];
    activation_backward backward[2];
} activation_row;

static PyObject *activation(PyObject *args, PyObject *kwargs, const activation_row *row,
                            int backward) {
    char *forward_kwlist[] = {"x", NULL};
    char *backward_kwlist[] = {"dout", (char *)row->saved_name, NULL};
    PyObject *first_obj = NULL, *second_obj = NULL;
    PyArrayObject *first = NULL, *second = NULL, *out = NULL;
    const char *first_name = backward ? "dout" : "x";
    int ok = backward ? PyArg_ParseTupleAndKeywords(args, kwargs, row->backward_format,
                                                    backward_kwlist, &first_obj, &second_obj)
                      : PyArg_ParseTupleAndKeywords(args, kwargs, row->forward_format,
                                                    forward_kwlist, &first_obj);
    if (!ok) return NULL;
    if ((first = float_input(first_obj, first_name, -1, NULL, 2)) == NULL) goto fail;
    int typenum = PyArray_TYPE(first);
    npy_intp B = PyArray_DIM(first, 0), C = PyArray_DIM(first, 1);
    if (backward) {
        second = float_input(second_obj, row->saved_name, typenum, first_name, 2);
        if (second == NULL) goto fail;
        if (require_shape(second, row->saved_name, 2, PyArray_DIMS(first), first_name, first) <
            0) {
            goto fail;
        }
    }
    if ((out = (PyArrayObject *)PyArray_SimpleNew(2, PyArray_DIMS(first), typenum)) == NULL) {
        goto fail;
    }
    int is_double = typenum == NPY_DOUBLE;
    void *out_data = PyArray_DATA(out), *first_data = PyArray_DATA(first);
    void *second_data = second == NULL ? NULL : PyArray_DATA(second);
    FCNN_BEGIN_KERNEL;
    if (backward) {
        row->backward[is_double](out_data, first_data, second_data, B, C);
    } else {
        row->forward[is_double](out_data, first_data, B, C);
    }
    FCNN_END_KERNEL;
    Py_DECREF(first);
    Py_XDECREF(second);
    return (PyObject *)out;
fail:
    Py_XDECREF(first);
    Py_XDECREF(second);
    Py_XDECREF(out);
    return NULL;
}

// The kernels of a row behind the activation_row signatures, for one dtype.
#define ACTIVATION_KERNELS(name, sizes, real, suffix)                                         \
    static void name##_forward##suffix(void *out, const void *inp, fcnn_size B,              \
                                       fcnn_size C) {                                        \
        fcnn_##name##_forward##suffix((real *)out, (const real *)inp, sizes(B, C));          \
    }                                                                                         \
    static void name##_backward##suffix(void *dinp, const void *dout, const void *saved,     \
                                        fcnn_size B, fcnn_size C) {                          \
        fcnn_##name##_backward##suffix((real *)dinp, (const real *)dout, (const real *)saved, \
                                       sizes(B, C));                                         \
    }

// A row's kernels, its table entry and its two bindings.
#define ACTIVATION_BINDINGS(name, saved, sizes, forward_doc, backward_doc)                    \
    ACTIVATION_KERNELS(name, sizes, float, _f32)                                              \
    ACTIVATION_KERNELS(name, sizes, double, _f64)                                             \
    static const activation_row name##_row = {                                                \
        "O:" #name "_forward",                                                                \
        "OO:" #name "_backward",                                                              \
        #saved,                                                                               \
        {name##_forward_f32, name##_forward_f64},                                             \
        {name##_backward_f32, name##_backward_f64},                                           \
    };                                                                                        \
    static PyObject *name##_forward(PyObject *self, PyObject *args, PyObject *kwargs) {       \
        return activation(args, kwargs, &name##_row, 0);                                      \
    }                                                                                         \
    static PyObject *name##_backward(PyObject *self, PyObject *args, PyObject *kwargs) {      \
        return activation(args, kwargs, &name##_row, 1);                                      \
    }

FCNN_ACTIVATIONS(ACTIVATION_BINDINGS)

// ----------------------------------------------------------------------------
// softmax + cross-entropy

static PyObject *cross_entropy(PyObject *args, PyObject *kwargs, int backward) {
    static char *kwlist[] = {"logits", "labels", NULL};
    PyObject *logits_obj, *labels_obj;
    PyArrayObject *logits = NULL, *labels = NULL, *dlogits = NULL;
    const char *format = backward ? "OO:softmax_cross_entropy_backward"
                                  : "OO:softmax_cross_entropy_forward";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, format, kwlist, &logits_obj, &labels_obj)) {
        return NULL;
    }
    if ((logits = float_input(logits_obj, "logits", -1, NULL, 2)) == NULL) goto fail;
    labels = index_array(labels_obj, "labels", PyArray_DIM(logits, 0), PyArray_DIM(logits, 1),
                         "logits", logits);
    if (labels == NULL) goto fail;
    int typenum = PyArray_TYPE(logits);
    npy_intp B = PyArray_DIM(logits, 0), C = PyArray_DIM(logits, 1);
    void *logits_data = PyArray_DATA(logits);
    const int64_t *label_data = (const int64_t *)PyArray_DATA(labels);
    PyObject *result;
    if (backward) {
        dlogits = (PyArrayObject *)PyArray_SimpleNew(2, PyArray_DIMS(logits), typenum);
        if (dlogits == NULL) goto fail;
        void *dlogits_data = PyArray_DATA(dlogits);
        FCNN_BEGIN_KERNEL;
        DISPATCH(typenum, fcnn_softmax_cross_entropy_backward, dlogits_data, logits_data,
                 label_data, B, C);
        FCNN_END_KERNEL;
        result = (PyObject *)dlogits;
    } else {
        double loss = 0;
        FCNN_BEGIN_KERNEL;
        DISPATCH(typenum, fcnn_softmax_cross_entropy_forward, &loss, logits_data, label_data, B,
                 C);
        FCNN_END_KERNEL;
        if ((result = PyFloat_FromDouble(loss)) == NULL) goto fail;
    }
    Py_DECREF(logits);
    Py_DECREF(labels);
    return result;
fail:
    Py_XDECREF(logits);
    Py_XDECREF(labels);
    Py_XDECREF(dlogits);
    return NULL;
}

static PyObject *softmax_cross_entropy_forward(PyObject *self, PyObject *args,
                                               PyObject *kwargs) {
    return cross_entropy(args, kwargs, 0);
}

static PyObject *softmax_cross_entropy_backward(PyObject *self, PyObject *args,
                                                PyObject *kwargs) {
    return cross_entropy(args, kwargs, 1);
}

// ----------------------------------------------------------------------------
// optimiser

// An array updated in place: a copy would be updated and thrown away, so it must be usable as
// it is. typenum < 0 lets it decide the dtype of the call.
static int check_in_place(PyObject *obj, const char *name, int typenum, const char *ref_name) {
    if (check_array(obj, name, typenum, ref_name, 0) < 0) return -1;
    PyArrayObject *array = (PyArrayObject *)obj;
    const char *problem = !PyArray_ISWRITEABLE(array)       ? "read-only"
                          : !PyArray_IS_C_CONTIGUOUS(array) ? "non-contiguous"
                          : !PyArray_ISALIGNED(array)       ? "misaligned"
                          : !PyArray_ISNOTSWAPPED(array)    ? "byte-swapped"
                                                            : NULL;
    if (problem != NULL) {
        PyErr_Format(PyExc_TypeError,
                     "%s must be a writable, aligned, C-contiguous array of native byte order "
                     "(it is updated in place), got a %s array",
                     name, problem);
        return -1;
    }
    return 0;
}

static PyObject *sgd_step(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"param",    "grad",     "lr", "weight_decay", "momentum",
                             "velocity", "nesterov", NULL};
    PyObject *param_obj, *grad_obj, *lr_obj, *weight_decay_obj = NULL, *momentum_obj = NULL;
    PyObject *velocity_obj = Py_None;
    int nesterov = 0;
    PyArrayObject *param = NULL, *grad = NULL, *velocity = NULL;
    double lr, weight_decay = 0.0, momentum = 0.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|OOOp:sgd_step", kwlist, &param_obj,
                                     &grad_obj, &lr_obj, &weight_decay_obj, &momentum_obj,
                                     &velocity_obj, &nesterov)) {
        return NULL;
    }
    if (check_in_place(param_obj, "param", -1, NULL) < 0) return NULL;
    param = (PyArrayObject *)param_obj;
    int typenum = PyArray_TYPE(param);
    if ((grad = float_input(grad_obj, "grad", typenum, "param", 0)) == NULL) goto fail;
    if (require_shape(grad, "grad", PyArray_NDIM(param), PyArray_DIMS(param), "param", param) <
        0) {
        goto fail;
    }
    if (real_arg(lr_obj, "lr", &lr) < 0) goto fail;
    if (sgd_settings_args(weight_decay_obj, momentum_obj, nesterov, &weight_decay, &momentum) < 0) {
        goto fail;
    }
    if (velocity_obj != Py_None) {
        if (check_in_place(velocity_obj, "velocity", typenum, "param") < 0) goto fail;
        velocity = (PyArrayObject *)velocity_obj;
        if (require_shape(velocity, "velocity", PyArray_NDIM(param), PyArray_DIMS(param),
                          "param", param) < 0) {
            goto fail;
        }
    } else if (momentum > 0) {
        PyErr_SetString(PyExc_ValueError,
                        "velocity must be an array like param when momentum > 0, got None");
        goto fail;
    }
    void *param_data = PyArray_DATA(param), *grad_data = PyArray_DATA(grad);
    // Without momentum the velocity is neither read nor kept.
    void *velocity_data = (velocity == NULL || momentum == 0) ? NULL : PyArray_DATA(velocity);
    npy_intp N = PyArray_SIZE(param);
    FCNN_BEGIN_KERNEL;
    DISPATCH(typenum, fcnn_sgd_step, param_data, velocity_data, grad_data, lr, weight_decay,
             momentum, nesterov, N);
    FCNN_END_KERNEL;
    Py_DECREF(grad);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(grad);
    return NULL;
}

static PyObject *exponential_lr(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"initial_lr", "step", "stage_length", "decay", "staircase", NULL};
    PyObject *initial_lr_obj, *step_obj, *stage_length_obj = NULL, *decay_obj = NULL;
    int staircase = 1;
    double initial_lr, decay = 0.5;
    long long step, stage_length = 500;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OOp:exponential_lr", kwlist,
                                     &initial_lr_obj, &step_obj, &stage_length_obj, &decay_obj,
                                     &staircase)) {
        return NULL;
    }
    if (real_arg(initial_lr_obj, "initial_lr", &initial_lr) < 0) return NULL;
    if (index_arg(step_obj, "step", 0, &step) < 0) return NULL;
    if (stage_length_obj != NULL &&
        index_arg(stage_length_obj, "stage_length", 1, &stage_length) < 0) {
        return NULL;
    }
    if (decay_obj != NULL) {
        if (real_arg(decay_obj, "decay", &decay) < 0) return NULL;
        if (decay <= 0 || decay > 1) {
            PyErr_Format(PyExc_ValueError, "decay must be in (0, 1], got %R", decay_obj);
            return NULL;
        }
    }
    return PyFloat_FromDouble(fcnn_exponential_lr(initial_lr, step, stage_length, decay,
                                                  staircase));
}

// ----------------------------------------------------------------------------
// the linear backward pass into preallocated gradients (the Module API reuses them step after
// step: a fresh (C, OC) dweight per step costs page faults and cache misses). Private (leading
// underscore, not in the stub): fcnn.functional.Linear's helper; its twin is
// reference._linear_backward_out, compared in tests/test_api.py.

// Whether two C-contiguous arrays share bytes (a kernel writing one must not read the other).
static int overlap(PyArrayObject *first, PyArrayObject *second) {
    const char *first_start = PyArray_BYTES(first), *second_start = PyArray_BYTES(second);
    return first_start < second_start + PyArray_NBYTES(second) &&
           second_start < first_start + PyArray_NBYTES(first);
}

static PyObject *_linear_backward_out(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"dx", "dweight", "dbias", "dout", "x", "weight", NULL};
    PyObject *dx_obj, *dweight_obj, *dbias_obj, *dout_obj, *x_obj, *weight_obj;
    PyArrayObject *dout = NULL, *x = NULL, *weight = NULL, *dx = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOO:_linear_backward_out", kwlist,
                                     &dx_obj, &dweight_obj, &dbias_obj, &dout_obj, &x_obj,
                                     &weight_obj)) {
        return NULL;
    }
    if ((dout = float_input(dout_obj, "dout", -1, NULL, 2)) == NULL) goto fail;
    int typenum = PyArray_TYPE(dout);
    if ((x = float_input(x_obj, "x", typenum, "dout", 2)) == NULL) goto fail;
    if ((weight = float_input(weight_obj, "weight", typenum, "dout", 2)) == NULL) goto fail;
    npy_intp B = PyArray_DIM(dout, 0), OC = PyArray_DIM(dout, 1), C = PyArray_DIM(x, 1);
    npy_intp x_shape[2] = {B, -1}, weight_shape[2] = {C, OC};
    if (require_shape(x, "x", 2, x_shape, "dout", dout) < 0) goto fail;
    if (require_shape(weight, "weight", 2, weight_shape, "x", x) < 0) goto fail;
    if (check_in_place(dweight_obj, "dweight", typenum, "dout") < 0) goto fail;
    if (check_in_place(dbias_obj, "dbias", typenum, "dout") < 0) goto fail;
    PyArrayObject *dweight = (PyArrayObject *)dweight_obj, *dbias = (PyArrayObject *)dbias_obj;
    npy_intp dbias_shape[1] = {OC}, dx_shape[2] = {B, C};
    if (require_shape(dweight, "dweight", 2, weight_shape, "weight", weight) < 0) goto fail;
    if (require_shape(dbias, "dbias", 1, dbias_shape, "dout", dout) < 0) goto fail;
    if (dx_obj != Py_None) {
        if (check_in_place(dx_obj, "dx", typenum, "dout") < 0) goto fail;
        dx = (PyArrayObject *)dx_obj;
        if (require_shape(dx, "dx", 2, dx_shape, "x", x) < 0) goto fail;
    }
    // Each output against every other array of the call.
    PyArrayObject *arrays[6] = {dweight, dbias, dx, dout, x, weight};
    const char *names[6] = {"dweight", "dbias", "dx", "dout", "x", "weight"};
    for (int o = 0; o < 3; o++) {
        for (int i = o + 1; i < 6 && arrays[o] != NULL; i++) {
            if (arrays[i] != NULL && overlap(arrays[o], arrays[i])) {
                PyErr_Format(PyExc_ValueError, "%s must not share memory with %s", names[o],
                             names[i]);
                goto fail;
            }
        }
    }
    void *dx_data = dx == NULL ? NULL : PyArray_DATA(dx);
    FCNN_BEGIN_KERNEL;
    DISPATCH(typenum, fcnn_linear_backward, dx_data, PyArray_DATA(dweight), PyArray_DATA(dbias),
             PyArray_DATA(dout), PyArray_DATA(x), PyArray_DATA(weight), B, C, OC,
             fcnn_get_threads());
    FCNN_END_KERNEL;
    Py_DECREF(dout);
    Py_DECREF(x);
    Py_DECREF(weight);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(dout);
    Py_XDECREF(x);
    Py_XDECREF(weight);
    return NULL;
}

// ----------------------------------------------------------------------------
// dropout: the mask of (seed, step) is drawn again by the backward, never passed around

// A dropout rate: a real number in [0, 1).
static int dropout_rate_arg(PyObject *obj, const char *name, double *value) {
    if (number_arg(obj, name, 1, value) < 0) return -1;
    if (!(*value >= 0 && *value < 1)) {  // NaN fails too
        PyErr_Format(PyExc_ValueError, "%s must be in [0, 1), got %R", name, obj);
        return -1;
    }
    return 0;
}

// A seed: an integer in [0, 2**64).
static int seed_arg(PyObject *obj, const char *name, uint64_t *value) {
    PyObject *index = PyBool_Check(obj) ? NULL : PyNumber_Index(obj);
    if (index == NULL) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be an integer, got %s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    unsigned long long number = PyLong_AsUnsignedLongLong(index);
    Py_DECREF(index);
    if (number == (unsigned long long)-1 && PyErr_Occurred()) {  // negative or too large
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s must be an integer >= 0 and < 2**64, got %R", name,
                     obj);
        return -1;
    }
    *value = (uint64_t)number;
    return 0;
}

static PyObject *dropout(PyObject *args, PyObject *kwargs, int backward) {
    static char *forward_kwlist[] = {"x", "p", "seed", "step", NULL};
    static char *backward_kwlist[] = {"dout", "p", "seed", "step", NULL};
    const char *name = backward ? "dout" : "x";
    PyObject *input_obj, *p_obj, *seed_obj, *step_obj;
    PyArrayObject *input = NULL, *out = NULL;
    double p;
    uint64_t seed;
    long long step;
    const char *format = backward ? "OOOO:dropout_backward" : "OOOO:dropout_forward";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, format,
                                     backward ? backward_kwlist : forward_kwlist, &input_obj,
                                     &p_obj, &seed_obj, &step_obj)) {
        return NULL;
    }
    if ((input = float_input(input_obj, name, -1, NULL, 2)) == NULL) goto fail;
    if (dropout_rate_arg(p_obj, "p", &p) < 0) goto fail;
    if (seed_arg(seed_obj, "seed", &seed) < 0) goto fail;
    if (index_arg(step_obj, "step", 0, &step) < 0) goto fail;
    int typenum = PyArray_TYPE(input);
    npy_intp B = PyArray_DIM(input, 0), H = PyArray_DIM(input, 1);
    if ((out = (PyArrayObject *)PyArray_SimpleNew(2, PyArray_DIMS(input), typenum)) == NULL) {
        goto fail;
    }
    uint64_t key = fcnn_random_key(seed, (uint64_t)step);
    void *out_data = PyArray_DATA(out), *input_data = PyArray_DATA(input);
    int threads = fcnn_get_threads();
    FCNN_BEGIN_KERNEL;
    if (backward) {
        DISPATCH(typenum, fcnn_dropout_backward, out_data, input_data, B, H, p, key, threads);
    } else {
        DISPATCH(typenum, fcnn_dropout_forward, out_data, input_data, B, H, p, key, threads);
    }
    FCNN_END_KERNEL;
    Py_DECREF(input);
    return (PyObject *)out;
fail:
    Py_XDECREF(input);
    Py_XDECREF(out);
    return NULL;
}


// The six strengths of fcnn_augment_settings, each finite and >= 0; scale < 1 (a scale factor
// stays positive) and elastic_sigma <= FCNN_MAX_ELASTIC_SIGMA (its kernel stays small).
static int augment_settings_arg(PyObject *const objs[6], fcnn_augment_settings *settings) {
    static const char *names[6] = {"translate", "rotate", "scale",
                                   "shear",     "elastic_alpha", "elastic_sigma"};
    double values[6];
    for (int i = 0; i < 6; i++) {
        if (real_arg(objs[i], names[i], &values[i]) < 0) return -1;
    }
    if (values[2] >= 1) {
        PyErr_Format(PyExc_ValueError, "scale must be in [0, 1), got %R", objs[2]);
        return -1;
    }
    if (values[5] > FCNN_MAX_ELASTIC_SIGMA) {
        PyErr_Format(PyExc_ValueError, "elastic_sigma must be in [0, %g], got %R",
                     FCNN_MAX_ELASTIC_SIGMA, objs[5]);
        return -1;
    }
    *settings = (fcnn_augment_settings){values[0], values[1], values[2],
                                        values[3], values[4], values[5]};
    return 0;
}

// A non-empty C-contiguous uint8 array of shape (N, H, W) (new reference) or NULL.
static PyArrayObject *image_stack(PyObject *obj, const char *name) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray, got %s", name,
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *array = (PyArrayObject *)obj;
    if (PyArray_TYPE(array) != NPY_UINT8) {
        PyErr_Format(PyExc_TypeError, "%s must have dtype uint8, got %S", name, dtype_of(array));
        return NULL;
    }
    char text[SHAPE_TEXT_SIZE];
    shape_text(text, PyArray_NDIM(array), PyArray_DIMS(array));
    if (PyArray_NDIM(array) != 3 || PyArray_SIZE(array) == 0) {
        PyErr_Format(PyExc_ValueError,
                     "%s must be a non-empty 3-D array (images, height, width), got shape %s",
                     name, text);
        return NULL;
    }
    return as_contiguous(obj);
}

static PyObject *augment(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"images", "indices",       "seed",          "first_stream",
                             "translate", "rotate",     "scale",         "shear",
                             "elastic_alpha", "elastic_sigma", NULL};
    PyObject *images_obj, *indices_obj, *seed_obj, *stream_obj, *strength_objs[6];
    PyArrayObject *images = NULL, *indices = NULL, *out = NULL;
    void *workspace = NULL;
    uint64_t seed;
    long long first_stream;
    fcnn_augment_settings settings;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOOOOO:augment", kwlist, &images_obj,
                                     &indices_obj, &seed_obj, &stream_obj, &strength_objs[0],
                                     &strength_objs[1], &strength_objs[2], &strength_objs[3],
                                     &strength_objs[4], &strength_objs[5])) {
        return NULL;
    }
    if ((images = image_stack(images_obj, "images")) == NULL) goto fail;
    npy_intp N = PyArray_DIM(images, 0), H = PyArray_DIM(images, 1), W = PyArray_DIM(images, 2);
    if ((indices = index_array(indices_obj, "indices", -1, N, NULL, NULL)) == NULL) goto fail;
    npy_intp B = PyArray_DIM(indices, 0);
    if (seed_arg(seed_obj, "seed", &seed) < 0) goto fail;
    if (index_arg(stream_obj, "first_stream", 0, &first_stream) < 0) goto fail;
    if (first_stream > INT64_MAX - (B - 1)) {
        PyErr_Format(PyExc_ValueError,
                     "first_stream must be at most 2**63 - %zd for %zd images, got %R",
                     (Py_ssize_t)B, (Py_ssize_t)B, stream_obj);
        goto fail;
    }
    if (augment_settings_arg(strength_objs, &settings) < 0) goto fail;
    int threads = fcnn_get_threads();
    fcnn_size workspace_bytes = fcnn_augment_workspace(H, W, &settings, threads);
    if (workspace_bytes < 0 ||
        (workspace_bytes > 0 && (workspace = PyMem_RawMalloc((size_t)workspace_bytes)) == NULL)) {
        PyErr_NoMemory();
        goto fail;
    }
    npy_intp out_shape[3] = {B, H, W};
    if ((out = (PyArrayObject *)PyArray_SimpleNew(3, out_shape, NPY_UINT8)) == NULL) goto fail;
    FCNN_BEGIN_KERNEL;
    fcnn_augment(PyArray_DATA(out), workspace, PyArray_DATA(images), PyArray_DATA(indices), B, H,
                 W, &settings, seed, (int64_t)first_stream, threads);
    FCNN_END_KERNEL;
    PyMem_RawFree(workspace);
    Py_DECREF(images);
    Py_DECREF(indices);
    return (PyObject *)out;
fail:
    PyMem_RawFree(workspace);
    Py_XDECREF(images);
    Py_XDECREF(indices);
    Py_XDECREF(out);
    return NULL;
}

static PyObject *dropout_forward(PyObject *self, PyObject *args, PyObject *kwargs) {
    return dropout(args, kwargs, 0);
}

static PyObject *dropout_backward(PyObject *self, PyObject *args, PyObject *kwargs) {
    return dropout(args, kwargs, 1);
}

// ----------------------------------------------------------------------------
// the fused epoch

// Checks a list of L in-place parameter arrays: arrays[l] must have shape (rows[l], cols[l])
// (rows NULL: 1-D of cols[l]). typenum decides the dtype (-1: arrays[0] decides). Each array
// checked is stored in arrays[] as a new reference (the caller releases arrays[0..*held)),
// so that another thread changing the list while the GIL is released frees nothing in use.
static int parameter_list(PyObject *list, const char *name, int L, int *typenum,
                          const npy_intp *rows, const npy_intp *cols, PyArrayObject **arrays,
                          int *held) {
    *held = 0;
    if (!PyList_Check(list) && !PyTuple_Check(list)) {
        PyErr_Format(PyExc_TypeError, "%s must be a list of numpy arrays, got %s", name,
                     Py_TYPE(list)->tp_name);
        return -1;
    }
    if (PySequence_Fast_GET_SIZE(list) != L) {
        PyErr_Format(PyExc_ValueError, "%s must hold %d arrays (one per layer), got %zd", name,
                     L, PySequence_Fast_GET_SIZE(list));
        return -1;
    }
    for (int l = 0; l < L; l++) {
        char item_name[64];
        snprintf(item_name, sizeof item_name, "%s[%d]", name, l);
        PyObject *item = PySequence_Fast_GET_ITEM(list, l);
        if (check_in_place(item, item_name, *typenum, "weights[0]") < 0) return -1;
        arrays[l] = (PyArrayObject *)Py_NewRef(item);
        *held = l + 1;
        *typenum = PyArray_TYPE(arrays[l]);
        npy_intp expected[2] = {rows == NULL ? cols[l] : rows[l], cols[l]};
        if (require_shape(arrays[l], item_name, rows == NULL ? 1 : 2, expected, "weights[0]",
                          arrays[0]) < 0) {
            return -1;
        }
    }
    return 0;
}

// Reads train_epoch's dropout argument into net (num_layers set): None, or a list of one entry
// per hidden layer, each None or (p, seed, step), step being that of the call's first batch.
static int dropout_list(fcnn_mlp *net, PyObject *list) {
    if (list == Py_None) return 0;
    Py_ssize_t hidden = net->num_layers - 1;
    if (!PyList_Check(list) && !PyTuple_Check(list)) {
        PyErr_Format(PyExc_TypeError, "dropout must be None or a list, got %s",
                     Py_TYPE(list)->tp_name);
        return -1;
    }
    if (PySequence_Fast_GET_SIZE(list) != hidden) {
        PyErr_Format(PyExc_ValueError,
                     "dropout must hold %zd entries (one per hidden layer), got %zd", hidden,
                     PySequence_Fast_GET_SIZE(list));
        return -1;
    }
    for (Py_ssize_t l = 0; l < hidden; l++) {
        PyObject *item = PySequence_Fast_GET_ITEM(list, l);
        if (item == Py_None) continue;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
            PyErr_Format(PyExc_TypeError,
                         "dropout[%zd] must be None or a tuple (p, seed, step)", l);
            return -1;
        }
        long long step;
        if (dropout_rate_arg(PyTuple_GET_ITEM(item, 0), "p", &net->dropout_rates[l]) < 0 ||
            seed_arg(PyTuple_GET_ITEM(item, 1), "seed", &net->dropout_seeds[l]) < 0 ||
            index_arg(PyTuple_GET_ITEM(item, 2), "step", 0, &step) < 0) {
            return -1;
        }
        net->dropout_steps[l] = (uint64_t)step;
    }
    return 0;
}

// The augmentation of a fused epoch over M samples of C0 uint8 pixels: augment, a sequence of
// the six strengths; image_shape, (height, width), or None for square images; seed; the
// stream of the first sample (>= 0, default 0).
static int epoch_augment_arg(fcnn_epoch_augment *augmentation, PyObject *augment_obj,
                             PyObject *image_shape_obj, PyObject *seed_obj,
                             PyObject *first_stream_obj, int images_are_bytes, fcnn_size C0,
                             npy_intp M) {
    if (!images_are_bytes) {
        PyErr_SetString(PyExc_TypeError, "images must have dtype uint8 to be augmented");
        return -1;
    }
    PyObject *strengths = PySequence_Fast(augment_obj, "augment must be None or a sequence of "
                                                       "6 strengths");
    if (strengths == NULL) return -1;
    if (PySequence_Fast_GET_SIZE(strengths) != 6) {
        PyErr_Format(PyExc_ValueError,
                     "augment must hold 6 strengths (translate, rotate, scale, shear, "
                     "elastic_alpha, elastic_sigma), got %zd",
                     PySequence_Fast_GET_SIZE(strengths));
        Py_DECREF(strengths);
        return -1;
    }
    int status = augment_settings_arg(PySequence_Fast_ITEMS(strengths), &augmentation->settings);
    Py_DECREF(strengths);
    if (status < 0) return -1;
    long long height = 0, width = 0;
    if (image_shape_obj == Py_None) {
        while ((height + 1) * (height + 1) <= C0) height++;
        width = height;
    } else {
        PyObject *shape = PySequence_Fast(image_shape_obj, "image_shape must be None or a pair "
                                                           "(height, width)");
        if (shape == NULL) return -1;
        status = PySequence_Fast_GET_SIZE(shape) == 2 ? 0 : -1;
        if (status < 0) {
            PyErr_SetString(PyExc_ValueError, "image_shape must be None or a pair (height, width)");
        } else {
            status = index_arg(PySequence_Fast_GET_ITEM(shape, 0), "image_shape[0]", 1, &height);
            if (status == 0) {
                status = index_arg(PySequence_Fast_GET_ITEM(shape, 1), "image_shape[1]", 1, &width);
            }
        }
        Py_DECREF(shape);
        if (status < 0) return -1;
    }
    if (height > C0 || width > C0 || height * width != C0) {
        PyErr_Format(PyExc_ValueError,
                     "image_shape must be (height, width) with height * width = %zd (the "
                     "inputs of weights[0]), got %R",
                     (Py_ssize_t)C0, image_shape_obj);
        return -1;
    }
    augmentation->height = (fcnn_size)height;
    augmentation->width = (fcnn_size)width;
    augmentation->seed = 0;
    if (seed_obj != NULL && seed_arg(seed_obj, "augment_seed", &augmentation->seed) < 0) {
        return -1;
    }
    long long first_stream = 0;
    if (first_stream_obj != NULL &&
        index_arg(first_stream_obj, "first_stream", 0, &first_stream) < 0) {
        return -1;
    }
    if (first_stream > INT64_MAX - (M - 1)) {
        PyErr_Format(PyExc_ValueError,
                     "first_stream must be at most 2**63 - %zd for %zd samples, got %R",
                     (Py_ssize_t)M, (Py_ssize_t)M, first_stream_obj);
        return -1;
    }
    augmentation->first_stream = (int64_t)first_stream;
    return 0;
}

static PyObject *train_epoch(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"images",           "labels",          "order",     "weights",
                             "biases",           "lrs",             "batch_size", "weight_decay",
                             "momentum",         "weight_velocities", "bias_velocities",
                             "nesterov",         "sparse_threshold", "num_threads", "dropout",
                             "augment",          "image_shape",      "augment_seed", "first_stream",
                             NULL};
    PyObject *images_obj, *labels_obj, *order_obj, *weights_obj, *biases_obj, *lrs_obj;
    PyObject *batch_obj, *weight_decay_obj = NULL, *momentum_obj = NULL;
    PyObject *weight_velocities_obj = Py_None, *bias_velocities_obj = Py_None;
    PyObject *threshold_obj = Py_None, *threads_obj = NULL, *dropout_obj = Py_None;
    PyObject *augment_obj = Py_None, *image_shape_obj = Py_None, *augment_seed_obj = NULL;
    PyObject *first_stream_obj = NULL;
    fcnn_epoch_augment augmentation = {0};
    int nesterov = 0;
    PyArrayObject *images = NULL, *labels = NULL, *order = NULL, *lrs = NULL;
    // Owned references to the parameter arrays, counted by held[]: weights, biases, velocities.
    PyArrayObject *params[4][FCNN_MAX_LAYERS];
    int held[4] = {0, 0, 0, 0};
    PyArrayObject **weights = params[0], **biases = params[1];
    PyArrayObject **weight_velocities = params[2], **bias_velocities = params[3];
    fcnn_mlp net = {0};
    npy_intp rows[FCNN_MAX_LAYERS], cols[FCNN_MAX_LAYERS];
    void *workspace = NULL;
    double weight_decay = 0.0, momentum = 0.0, sparse_threshold = -1.0;
    long long batch_size, num_threads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOO|OOOOpOOOOOOO:train_epoch", kwlist,
                                     &images_obj, &labels_obj, &order_obj, &weights_obj,
                                     &biases_obj, &lrs_obj, &batch_obj, &weight_decay_obj,
                                     &momentum_obj, &weight_velocities_obj,
                                     &bias_velocities_obj, &nesterov, &threshold_obj,
                                     &threads_obj, &dropout_obj, &augment_obj, &image_shape_obj,
                                     &augment_seed_obj, &first_stream_obj)) {
        return NULL;
    }
    // the layers: weights decide the dtype and the sizes
    if (!PyList_Check(weights_obj) && !PyTuple_Check(weights_obj)) {
        PyErr_Format(PyExc_TypeError, "weights must be a list of numpy arrays, got %s",
                     Py_TYPE(weights_obj)->tp_name);
        return NULL;
    }
    Py_ssize_t L = PySequence_Fast_GET_SIZE(weights_obj);
    if (L < 1 || L > FCNN_MAX_LAYERS) {
        PyErr_Format(PyExc_ValueError, "weights must hold 1 to %d arrays, got %zd",
                     FCNN_MAX_LAYERS, L);
        return NULL;
    }
    for (Py_ssize_t l = 0; l < L; l++) {
        PyObject *item = PySequence_Fast_GET_ITEM(weights_obj, l);
        if (!PyArray_Check(item) || PyArray_NDIM((PyArrayObject *)item) != 2) {
            PyErr_Format(PyExc_ValueError, "weights[%zd] must be a 2-D numpy array", l);
            return NULL;
        }
        rows[l] = l == 0 ? PyArray_DIM((PyArrayObject *)item, 0) : cols[l - 1];
        cols[l] = PyArray_DIM((PyArrayObject *)item, 1);
    }
    int typenum = -1;
    if (parameter_list(weights_obj, "weights", (int)L, &typenum, rows, cols, weights,
                       &held[0]) < 0 ||
        parameter_list(biases_obj, "biases", (int)L, &typenum, NULL, cols, biases,
                       &held[1]) < 0) {
        goto fail;
    }
    net.num_layers = L;
    for (Py_ssize_t l = 0; l < L; l++) {
        net.sizes[l] = rows[l];
        net.weights[l] = PyArray_DATA(weights[l]);
        net.biases[l] = PyArray_DATA(biases[l]);
    }
    net.sizes[L] = cols[L - 1];
    // settings
    if (index_arg(batch_obj, "batch_size", 1, &batch_size) < 0) goto fail;
    if (sgd_settings_args(weight_decay_obj, momentum_obj, nesterov, &weight_decay, &momentum) < 0) {
        goto fail;
    }
    // None: the cost model picks sparse or dense per batch
    if (threshold_obj != Py_None) {
        if (real_arg(threshold_obj, "sparse_threshold", &sparse_threshold) < 0) goto fail;
        if (sparse_threshold > 1) {
            PyErr_Format(PyExc_ValueError, "sparse_threshold must be None or in [0, 1], got %R",
                         threshold_obj);
            goto fail;
        }
    }
    if (threads_obj != NULL && index_arg(threads_obj, "num_threads", 0, &num_threads) < 0) {
        goto fail;
    }
    if (dropout_list(&net, dropout_obj) < 0) goto fail;
    if (momentum > 0) {
        if (weight_velocities_obj == Py_None || bias_velocities_obj == Py_None) {
            PyErr_SetString(PyExc_ValueError,
                            "weight_velocities and bias_velocities must be lists like weights "
                            "and biases when momentum > 0, got None");
            goto fail;
        }
        if (parameter_list(weight_velocities_obj, "weight_velocities", (int)L, &typenum, rows,
                           cols, weight_velocities, &held[2]) < 0 ||
            parameter_list(bias_velocities_obj, "bias_velocities", (int)L, &typenum, NULL, cols,
                           bias_velocities, &held[3]) < 0) {
            goto fail;
        }
        for (Py_ssize_t l = 0; l < L; l++) {
            net.weight_velocities[l] = PyArray_DATA(weight_velocities[l]);
            net.bias_velocities[l] = PyArray_DATA(bias_velocities[l]);
        }
    }
    // the data
    if (!PyArray_Check(images_obj)) {
        PyErr_Format(PyExc_TypeError, "images must be a numpy.ndarray, got %s",
                     Py_TYPE(images_obj)->tp_name);
        goto fail;
    }
    int images_type = PyArray_TYPE((PyArrayObject *)images_obj);
    int images_are_bytes = images_type == NPY_UINT8;
    if (!images_are_bytes && images_type != typenum) {
        PyErr_Format(PyExc_TypeError, "images must have dtype uint8 or %s (the dtype of the "
                     "weights), got %S", typenum == NPY_FLOAT ? "float32" : "float64",
                     dtype_of((PyArrayObject *)images_obj));
        goto fail;
    }
    if (check_array(images_obj, "images", images_type, "weights", 2) < 0) goto fail;
    npy_intp image_shape[2] = {-1, net.sizes[0]};
    if (require_shape((PyArrayObject *)images_obj, "images", 2, image_shape, "weights[0]",
                      weights[0]) < 0) {
        goto fail;
    }
    npy_intp N = PyArray_DIM((PyArrayObject *)images_obj, 0);
    if ((images = as_contiguous(images_obj)) == NULL) goto fail;
    labels = index_array(labels_obj, "labels", N, net.sizes[L], "images", images);
    if (labels == NULL) goto fail;
    if ((order = index_array(order_obj, "order", -1, N, NULL, NULL)) == NULL) goto fail;
    npy_intp M = PyArray_DIM(order, 0);
    if (augment_obj != Py_None &&
        epoch_augment_arg(&augmentation, augment_obj, image_shape_obj, augment_seed_obj,
                          first_stream_obj, images_are_bytes, net.sizes[0], M) < 0) {
        goto fail;
    }
    const fcnn_epoch_augment *augment = augment_obj == Py_None ? NULL : &augmentation;
    npy_intp num_batches = (M + (npy_intp)batch_size - 1) / (npy_intp)batch_size;
    lrs = (PyArrayObject *)PyArray_FROM_OTF(lrs_obj, NPY_DOUBLE, NPY_ARRAY_IN_ARRAY);
    if (lrs == NULL) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "lrs must be a 1-D array of learning rates");
        goto fail;
    }
    if (PyArray_NDIM(lrs) != 1 || PyArray_DIM(lrs, 0) != num_batches) {
        PyErr_Format(PyExc_ValueError,
                     "lrs must hold one rate per batch, %zd for %zd samples in batches of %lld, "
                     "got %zd", (Py_ssize_t)num_batches, (Py_ssize_t)M, batch_size,
                     (Py_ssize_t)PyArray_SIZE(lrs));
        goto fail;
    }
    const double *rates = (const double *)PyArray_DATA(lrs);
    for (npy_intp s = 0; s < num_batches; s++) {
        if (!isfinite(rates[s]) || rates[s] < 0) {
            PyObject *rate = PyFloat_FromDouble(rates[s]);
            if (rate != NULL) {
                PyErr_Format(PyExc_ValueError, "lrs must be finite and >= 0, got %R at index %zd",
                             rate, (Py_ssize_t)s);
                Py_DECREF(rate);
            }
            goto fail;
        }
    }
    fcnn_size B = batch_size < M ? (fcnn_size)batch_size : (fcnn_size)M;
    fcnn_size item = typenum == NPY_FLOAT ? 4 : 8;
    // The count used is the count the workspace is sized for: clamped, never cast blindly.
    int threads = num_threads > 0
                      ? (int)(num_threads < FCNN_MAX_THREADS ? num_threads : FCNN_MAX_THREADS)
                      : fcnn_get_threads();
    fcnn_size workspace_bytes = fcnn_train_epoch_workspace(&net, B, item, threads, augment);
    if (workspace_bytes < 0 || (workspace = PyMem_RawMalloc((size_t)workspace_bytes)) == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    fcnn_epoch_data data = {PyArray_DATA(images), images_are_bytes, PyArray_DATA(labels),
                            PyArray_DATA(order), M, (fcnn_size)batch_size, augment};
    fcnn_sgd_settings sgd = {rates, weight_decay, momentum, nesterov};
    double loss_sum = 0;
    int64_t correct = 0;
    fcnn_size steps = 0;
    FCNN_BEGIN_KERNEL;
    if (typenum == NPY_FLOAT) {
        steps = fcnn_train_epoch_f32(&loss_sum, &correct, &net, workspace, &data, &sgd,
                                     sparse_threshold, threads);
    } else {
        steps = fcnn_train_epoch_f64(&loss_sum, &correct, &net, workspace, &data, &sgd,
                                     sparse_threshold, threads);
    }
    FCNN_END_KERNEL;
    PyMem_RawFree(workspace);
    for (int list = 0; list < 4; list++) {
        for (int l = 0; l < held[list]; l++) Py_DECREF(params[list][l]);
    }
    Py_DECREF(images);
    Py_DECREF(labels);
    Py_DECREF(order);
    Py_DECREF(lrs);
    return Py_BuildValue("ndL", (Py_ssize_t)steps, loss_sum, (long long)correct);
fail:
    PyMem_RawFree(workspace);
    for (int list = 0; list < 4; list++) {
        for (int l = 0; l < held[list]; l++) Py_DECREF(params[list][l]);
    }
    Py_XDECREF(images);
    Py_XDECREF(labels);
    Py_XDECREF(order);
    Py_XDECREF(lrs);
    return NULL;
}

// ----------------------------------------------------------------------------
// threads

static PyObject *set_num_threads(PyObject *self, PyObject *arg) {
    long long count;
    if (index_arg(arg, "num_threads", 1, &count) < 0) return NULL;
    fcnn_set_threads(count);  // clamped to [1, FCNN_MAX_THREADS]
    Py_RETURN_NONE;
}

static PyObject *get_num_threads(PyObject *self, PyObject *unused) {
    return PyLong_FromLong(fcnn_get_threads());
}

static PyObject *force_vector_bytes(PyObject *self, PyObject *arg) {
    long long bytes;
    if (index_arg(arg, "vector_bytes", 0, &bytes) < 0) return NULL;
    if (bytes != 0 && bytes != 16 && bytes != 32 && bytes != 64) {
        PyErr_Format(PyExc_ValueError, "vector_bytes must be 0, 16, 32 or 64, got %lld", bytes);
        return NULL;
    }
    return PyLong_FromLong(fcnn_force_vector_bytes((int)bytes));
}

static PyObject *vector_bytes(PyObject *self, PyObject *unused) {
    return PyLong_FromLong(fcnn_vector_bytes());
}

// ----------------------------------------------------------------------------
// module

#define KERNEL(name, doc) \
    {#name, (PyCFunction)(void (*)(void))name, METH_VARARGS | METH_KEYWORDS, doc}

#define ACTIVATION_METHODS(name, saved, sizes, forward_doc, backward_doc) \
    KERNEL(name##_forward, forward_doc), KERNEL(name##_backward, backward_doc),

static PyMethodDef core_methods[] = {
    KERNEL(linear_forward, "linear_forward(x, weight, bias) -> x @ weight + bias"),
    KERNEL(linear_backward,
           "linear_backward(dout, x, weight, compute_dx=True) -> (dweight, dbias, dx or None)"),
    KERNEL(_linear_backward_out,
           "_linear_backward_out(dx, dweight, dbias, dout, x, weight): linear_backward into "
           "preallocated arrays (dx None to skip it); internal to fcnn.functional.Linear"),
    FCNN_ACTIVATIONS(ACTIVATION_METHODS)
    KERNEL(dropout_forward,
           "dropout_forward(x, p, seed, step) -> x / (1 - p) where kept, else 0; unit i of x "
           "kept iff random_uniform(random_key(seed, step), i) >= p"),
    KERNEL(dropout_backward,
           "dropout_backward(dout, p, seed, step) -> dout / (1 - p) where dropout_forward "
           "kept, else 0"),
    KERNEL(softmax_cross_entropy_forward,
           "softmax_cross_entropy_forward(logits, labels) -> mean cross-entropy (float)"),
    KERNEL(softmax_cross_entropy_backward,
           "softmax_cross_entropy_backward(logits, labels) -> (softmax - onehot) / B"),
    KERNEL(sgd_step,
           "sgd_step(param, grad, lr, weight_decay=0.0, momentum=0.0, velocity=None, "
           "nesterov=False): in-place SGD step, param <- (1 - weight_decay*lr)*param - lr*step"),
    KERNEL(exponential_lr,
           "exponential_lr(initial_lr, step, stage_length=500, decay=0.5, staircase=True) -> lr"),
    KERNEL(train_epoch,
           "train_epoch(images, labels, order, weights, biases, lrs, batch_size, ...) -> "
           "(steps, loss_sum, correct): one fused SGD epoch of a plain MLP, with dropout "
           "after hidden ReLUs"),
    KERNEL(augment,
           "augment(images, indices, seed, first_stream, translate, rotate, scale, shear, "
           "elastic_alpha, elastic_sigma) -> uint8 (B, H, W): images[indices] randomly warped, "
           "image b with the random stream first_stream + b"),
    {"set_num_threads", (PyCFunction)set_num_threads, METH_O,
     "set_num_threads(n): threads of every fcnn kernel, process-wide (clamped to [1, 256])"},
    {"get_num_threads", (PyCFunction)get_num_threads, METH_NOARGS,
     "get_num_threads() -> threads fcnn kernels use"},
    {"_force_vector_bytes", (PyCFunction)force_vector_bytes, METH_O,
     "_force_vector_bytes(n) -> previous n: for tests, the kernels that come in three vector "
     "widths use n = 16, 32 or 64 bytes whatever the CPU (each runs on any CPU), or pick by "
     "the CPU (n = 0, the default)"},
    {"_vector_bytes", (PyCFunction)vector_bytes, METH_NOARGS,
     "_vector_bytes() -> the vector width, in bytes, of the kernels that come in three: the "
     "forced one, else the CPU's (64 with AVX-512, 32 with AVX2, 16 without)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "_core",
    "C kernels of fcnn: layers, loss, SGD and the scheduler over float32/float64 arrays.", -1,
    core_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__core(void) {
    import_array();
    return PyModule_Create(&core_module);
}
