/* The embedded engine's input builder in C: the walk of `regoio.set_input`, calling rego-cpp's
 * input functions (passed in as addresses, from the library regopy loaded) without ctypes'
 * ~0.7 us a call.
 *
 * build(handle, value, functions) -> (status, special)
 *   status 0: built, `special` tells whether a key or string holds `"`, `\` or a control
 *             character (what JSON escapes);
 *   status 1: not built here (a type other than dict/list/str/bool/int/float/None, a key that
 *             is not a string, an int outside 64 bits, a string that is not valid UTF-8, nesting
 *             deeper than MAX_DEPTH): the caller frees the handle and builds the value in Python,
 *             which answers exactly as before (same input, same errors);
 *   status 2: a rego-cpp function refused; `special` is its error code.
 * Only exact types are taken (a str or dict subclass goes to Python). No Python code runs during
 * the walk, so the value cannot change under it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define MAX_DEPTH 200

typedef uint32_t (*fn_string)(void *, const char *);
typedef uint32_t (*fn_plain)(void *);
typedef uint32_t (*fn_count)(void *, uint32_t);
typedef uint32_t (*fn_bool)(void *, unsigned char);
typedef uint32_t (*fn_int)(void *, int64_t);
typedef uint32_t (*fn_float)(void *, double);

typedef struct {
    void *input;
    fn_string string;
    fn_plain item, null;
    fn_count object, array;
    fn_bool boolean;
    fn_int integer;
    fn_float real;
    int special;
    uint32_t code;
} Builder;

enum { BUILT = 0, FOREIGN = 1, REFUSED = 2 };

static int add_string(Builder *b, PyObject *s)
{
    Py_ssize_t n;
    const char *text = PyUnicode_AsUTF8AndSize(s, &n);
    if (text == NULL) {
        PyErr_Clear();
        return FOREIGN;
    }
    if (!b->special) {
        for (Py_ssize_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)text[i];
            if (c < 0x20 || c == '"' || c == '\\') {
                b->special = 1;
                break;
            }
        }
    }
    uint32_t code = b->string(b->input, text);
    if (code != 0) {
        b->code = code;
        return REFUSED;
    }
    return BUILT;
}

static int add(Builder *b, PyObject *v, int depth)
{
    uint32_t code;
    int r;
    if (depth > MAX_DEPTH)
        return FOREIGN;
    if (PyUnicode_CheckExact(v))
        return add_string(b, v);
    if (PyDict_CheckExact(v)) {
        Py_ssize_t pos = 0, n = PyDict_GET_SIZE(v);
        PyObject *key, *item;
        if (n > UINT32_MAX)
            return FOREIGN;
        while (PyDict_Next(v, &pos, &key, &item)) {
            if (!PyUnicode_CheckExact(key))
                return FOREIGN;
            if ((r = add_string(b, key)) != BUILT || (r = add(b, item, depth + 1)) != BUILT)
                return r;
            if ((code = b->item(b->input)) != 0)
                goto refused;
        }
        code = b->object(b->input, (uint32_t)n);
    } else if (PyList_CheckExact(v)) {
        Py_ssize_t n = PyList_GET_SIZE(v);
        if (n > UINT32_MAX)
            return FOREIGN;
        for (Py_ssize_t i = 0; i < n; i++) {
            if ((r = add(b, PyList_GET_ITEM(v, i), depth + 1)) != BUILT)
                return r;
        }
        code = b->array(b->input, (uint32_t)n);
    } else if (PyBool_Check(v)) {
        code = b->boolean(b->input, v == Py_True);
    } else if (PyLong_CheckExact(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (x == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return FOREIGN;
        }
        code = b->integer(b->input, (int64_t)x);
    } else if (PyFloat_CheckExact(v)) {
        code = b->real(b->input, PyFloat_AS_DOUBLE(v));
    } else if (v == Py_None) {
        code = b->null(b->input);
    } else {
        return FOREIGN;
    }
    if (code == 0)
        return BUILT;
refused:
    b->code = code;
    return REFUSED;
}

static PyObject *build(PyObject *self, PyObject *args)
{
    unsigned long long input, fns[8];
    PyObject *value;
    (void)self;
    if (!PyArg_ParseTuple(args, "KO(KKKKKKKK)", &input, &value, &fns[0], &fns[1], &fns[2],
                          &fns[3], &fns[4], &fns[5], &fns[6], &fns[7]))
        return NULL;
    for (int i = 0; i < 8; i++) {
        if (fns[i] == 0) {
            PyErr_SetString(PyExc_ValueError, "a rego-cpp input function is missing");
            return NULL;
        }
    }
    if (input == 0) {
        PyErr_SetString(PyExc_ValueError, "no input handle");
        return NULL;
    }
    Builder b = {
        .input = (void *)(uintptr_t)input,
        .string = (fn_string)(uintptr_t)fns[0],
        .item = (fn_plain)(uintptr_t)fns[1],
        .object = (fn_count)(uintptr_t)fns[2],
        .array = (fn_count)(uintptr_t)fns[3],
        .null = (fn_plain)(uintptr_t)fns[4],
        .boolean = (fn_bool)(uintptr_t)fns[5],
        .integer = (fn_int)(uintptr_t)fns[6],
        .real = (fn_float)(uintptr_t)fns[7],
        .special = 0,
        .code = 0,
    };
    int status = add(&b, value, 0);
    if (status == REFUSED)
        return Py_BuildValue("(iI)", status, (unsigned int)b.code);
    return Py_BuildValue("(ii)", status, status == BUILT ? b.special : 0);
}

static PyMethodDef methods[] = {
    {"build", build, METH_VARARGS, "Build a rego-cpp input from a JSON value (see the module's C source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_regoinput", "rego-cpp inputs built in C for pushgate.gate.regoio.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__regoinput(void)
{
    return PyModule_Create(&module);
}
