/* yamlsafe's plain path in C: one pass over libyaml's events, building each document's value
 * and spans as `yamlsafe._plain` does, without a Python event object per event.
 *
 * plain(text, max_documents, max_depth, tags, values, str_tag, scalar, span, document, indexes)
 *   -> list of documents, or None where the Python plain path raises _General (an anchor, an
 *      alias, a tag, a key that is not a string or repeats, too deep, too many documents, a
 *      syntax error): the caller then parses the text the general way.
 * A plain scalar whose text `tags` maps to `str_tag` is a string, made here; one whose (tag,
 * text) `values` maps is that value; any other scalar is `scalar(value, plain_implicit,
 * quoted_implicit)` (Python: the resolver and the constructors, which fill both dicts). An exception that callback raises
 * is raised from here. Spans are `span` instances (line, fields), documents `document` ones
 * (index, value, span), list indexes `indexes[i]` (below 256).
 * Nesting is bounded by max_depth and by MAX_DEPTH (deeper goes to the general path). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <yaml.h>

#define MAX_DEPTH 400
#define INTERN_LEN 24

typedef struct {
    yaml_parser_t parser;
    yaml_event_t event;
    int has_event;
    int general; /* set with a NULL result: not plain (no Python error) */
    long max_depth;
    PyObject *tags, *values, *str_tag, *scalar, *indexes;
    PyTypeObject *span; /* yamlsafe.Span: made here (see make) */
} Plain;

static PyObject *LINE, *FIELDS, *INDEX, *VALUE, *SPAN; /* attribute names */

/* An instance of a frozen dataclass with slots (Span, Document) and no __new__ of its own,
 * its fields set as its __init__ would: the slots are set directly, which its generated
 * __init__ does through object.__setattr__ too, without a Python call (~0.1 instead of
 * ~0.8 us a Span). yamlsafe checks at import that the classes are such. Steals nothing. */
static PyObject *make(PyTypeObject *type, int n, PyObject **names, PyObject **values)
{
    PyObject *obj = type->tp_alloc(type, 0);
    if (obj == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        if (PyObject_GenericSetAttr(obj, names[i], values[i]) < 0) {
            Py_DECREF(obj);
            return NULL;
        }
    }
    return obj;
}

static PyObject *span_new(Plain *p, size_t line, PyObject *fields)
{
    PyObject *number = PyLong_FromSize_t(line);
    if (number == NULL)
        return NULL;
    PyObject *names[2] = {LINE, FIELDS};
    PyObject *values[2] = {number, fields};
    PyObject *span;
    if (fields == NULL) {
        values[1] = PyTuple_New(0);
        span = values[1] == NULL ? NULL : make(p->span, 2, names, values);
        Py_XDECREF(values[1]);
    } else {
        span = make(p->span, 2, names, values);
    }
    Py_DECREF(number);
    return span;
}

static int next_event(Plain *p)
{
    if (p->has_event) {
        yaml_event_delete(&p->event);
        p->has_event = 0;
    }
    if (!yaml_parser_parse(&p->parser, &p->event)) {
        p->general = 1;
        return -1;
    }
    p->has_event = 1;
    return 0;
}

static PyObject *general(Plain *p)
{
    p->general = 1;
    return NULL;
}

/* The value of the current (scalar) event. */
static PyObject *scalar(Plain *p)
{
    yaml_event_t *e = &p->event;
    if (e->data.scalar.anchor != NULL || e->data.scalar.tag != NULL)
        return general(p);
    PyObject *value = PyUnicode_DecodeUTF8((const char *)e->data.scalar.value,
                                           (Py_ssize_t)e->data.scalar.length, "strict");
    if (value == NULL)
        return NULL;
    if (e->data.scalar.plain_implicit) {
        PyObject *tag = PyDict_GetItemWithError(p->tags, value); /* borrowed */
        if (tag == NULL && PyErr_Occurred()) {
            Py_DECREF(value);
            return NULL;
        }
        if (tag != NULL) {
            int same = tag == p->str_tag ? 1 : PyObject_RichCompareBool(tag, p->str_tag, Py_EQ);
            if (same < 0) {
                Py_DECREF(value);
                return NULL;
            }
            if (same) {
                if (PyUnicode_GET_LENGTH(value) <= INTERN_LEN)
                    PyUnicode_InternInPlace(&value);
                return value;
            }
            PyObject *key = PyTuple_Pack(2, tag, value); /* yamlsafe._VALUES' key */
            PyObject *made = key == NULL ? NULL : PyDict_GetItemWithError(p->values, key);
            Py_XDECREF(key);
            if (made != NULL) { /* borrowed */
                Py_DECREF(value);
                Py_INCREF(made);
                return made;
            }
            if (PyErr_Occurred()) {
                Py_DECREF(value);
                return NULL;
            }
        }
    }
    PyObject *made = PyObject_CallFunction(p->scalar, "OOO", value,
                                           e->data.scalar.plain_implicit ? Py_True : Py_False,
                                           e->data.scalar.quoted_implicit ? Py_True : Py_False);
    Py_DECREF(value);
    return made;
}

static PyObject *index_key(Plain *p, Py_ssize_t i)
{
    if (i < PyTuple_GET_SIZE(p->indexes)) {
        PyObject *key = PyTuple_GET_ITEM(p->indexes, i);
        Py_INCREF(key);
        return key;
    }
    return PyUnicode_FromFormat("%zd", i);
}

/* A field's or item's span: `line` when the value has no fields, else span(line, fields). */
static PyObject *span_of(Plain *p, size_t line, PyObject *fields)
{
    if (fields == NULL)
        return PyLong_FromSize_t(line);
    return span_new(p, line, fields);
}

static int append2(PyObject *flat, PyObject *a, PyObject *b)
{
    if (a == NULL || b == NULL || PyList_Append(flat, a) < 0 || PyList_Append(flat, b) < 0) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        return -1;
    }
    Py_DECREF(a);
    Py_DECREF(b);
    return 0;
}

/* The value of the collection whose start is the current event; *fields gets its span's
 * fields as a tuple (NULL when it has none), *line the line it starts on. */
static PyObject *collection(Plain *p, long depth, PyObject **fields, size_t *line)
{
    yaml_event_t *e = &p->event;
    *fields = NULL;
    if (e->type == YAML_MAPPING_START_EVENT) {
        if (e->data.mapping_start.anchor != NULL || e->data.mapping_start.tag != NULL)
            return general(p);
    } else if (e->type == YAML_SEQUENCE_START_EVENT) {
        if (e->data.sequence_start.anchor != NULL || e->data.sequence_start.tag != NULL)
            return general(p);
    } else {
        return general(p); /* an alias */
    }
    if (depth >= p->max_depth || depth >= MAX_DEPTH)
        return general(p);
    depth += 1;
    *line = e->start_mark.line + 1;
    int mapping = e->type == YAML_MAPPING_START_EVENT;
    PyObject *value = mapping ? PyDict_New() : PyList_New(0);
    PyObject *flat = PyList_New(0);
    if (value == NULL || flat == NULL)
        goto fail;
    for (Py_ssize_t i = 0;; i++) {
        if (next_event(p) < 0)
            goto fail;
        if (mapping) {
            if (e->type != YAML_SCALAR_EVENT) {
                if (e->type == YAML_MAPPING_END_EVENT)
                    break;
                general(p); /* a collection or an alias as a key */
                goto fail;
            }
            size_t key_line = e->start_mark.line + 1;
            PyObject *name = scalar(p);
            if (name == NULL)
                goto fail;
            if (!PyUnicode_CheckExact(name)) {
                Py_DECREF(name);
                general(p);
                goto fail;
            }
            PyUnicode_InternInPlace(&name);
            int seen = PyDict_Contains(value, name);
            if (seen != 0) {
                Py_DECREF(name);
                if (seen > 0)
                    general(p);
                goto fail;
            }
            if (next_event(p) < 0) {
                Py_DECREF(name);
                goto fail;
            }
            PyObject *child, *child_span;
            if (e->type == YAML_SCALAR_EVENT) {
                child = scalar(p);
                child_span = child == NULL ? NULL : PyLong_FromSize_t(key_line);
            } else {
                PyObject *child_fields;
                size_t child_line;
                child = collection(p, depth, &child_fields, &child_line);
                child_span = child == NULL ? NULL : span_of(p, key_line, child_fields);
                Py_XDECREF(child_fields);
            }
            if (child == NULL || PyDict_SetItem(value, name, child) < 0) {
                Py_DECREF(name);
                Py_XDECREF(child);
                Py_XDECREF(child_span);
                goto fail;
            }
            Py_DECREF(child);
            if (append2(flat, name, child_span) < 0)
                goto fail;
        } else {
            PyObject *child, *child_span;
            if (e->type == YAML_SEQUENCE_END_EVENT)
                break;
            if (e->type == YAML_SCALAR_EVENT) {
                size_t child_line = e->start_mark.line + 1;
                child = scalar(p);
                child_span = child == NULL ? NULL : PyLong_FromSize_t(child_line);
            } else {
                PyObject *child_fields;
                size_t child_line = 0;
                child = collection(p, depth, &child_fields, &child_line);
                child_span = child == NULL ? NULL : span_of(p, child_line, child_fields);
                Py_XDECREF(child_fields);
            }
            if (child == NULL || PyList_Append(value, child) < 0) {
                Py_XDECREF(child);
                Py_XDECREF(child_span);
                goto fail;
            }
            Py_DECREF(child);
            if (append2(flat, index_key(p, i), child_span) < 0)
                goto fail;
        }
    }
    if (PyList_GET_SIZE(flat) > 0) {
        *fields = PyList_AsTuple(flat);
        if (*fields == NULL)
            goto fail;
    }
    Py_DECREF(flat);
    return value;
fail:
    Py_XDECREF(value);
    Py_XDECREF(flat);
    return NULL;
}

static PyObject *documents(Plain *p, long max_documents, PyTypeObject *document)
{
    PyObject *out = PyList_New(0);
    if (out == NULL || next_event(p) < 0) /* the stream's start */
        goto fail;
    for (long index = 0;; index++) {
        if (next_event(p) < 0)
            goto fail;
        if (p->event.type == YAML_STREAM_END_EVENT)
            break;
        /* a document's start */
        if (index >= max_documents) {
            general(p);
            goto fail;
        }
        if (next_event(p) < 0)
            goto fail;
        PyObject *value, *span;
        if (p->event.type == YAML_SCALAR_EVENT) {
            size_t line = p->event.start_mark.line + 1;
            value = scalar(p);
            if (value == NULL)
                goto fail;
            if (value == Py_None) { /* `---` alone, comments only, or `~`: no document */
                Py_DECREF(value);
                value = NULL;
                span = NULL;
            } else {
                span = span_new(p, line, NULL);
            }
        } else {
            PyObject *fields;
            size_t line = 0;
            value = collection(p, 0, &fields, &line);
            if (value == NULL)
                goto fail;
            span = span_new(p, line, fields);
            Py_XDECREF(fields);
        }
        if (value != NULL) {
            PyObject *number = span == NULL ? NULL : PyLong_FromLong(index);
            PyObject *names[3] = {INDEX, VALUE, SPAN};
            PyObject *values[3] = {number, value, span};
            PyObject *doc = number == NULL ? NULL : make(document, 3, names, values);
            Py_XDECREF(number);
            Py_DECREF(value);
            Py_XDECREF(span);
            if (doc == NULL || PyList_Append(out, doc) < 0) {
                Py_XDECREF(doc);
                goto fail;
            }
            Py_DECREF(doc);
        }
        if (next_event(p) < 0) /* the document's end */
            goto fail;
    }
    return out;
fail:
    Py_XDECREF(out);
    return NULL;
}

static PyObject *plain(PyObject *self, PyObject *args)
{
    PyObject *text;
    PyTypeObject *document;
    long max_documents;
    Plain p;
    (void)self;
    memset(&p, 0, sizeof p);
    if (!PyArg_ParseTuple(args, "UllO!O!OOO!O!O!", &text, &max_documents, &p.max_depth,
                          &PyDict_Type, &p.tags, &PyDict_Type, &p.values, &p.str_tag, &p.scalar,
                          &PyType_Type, &p.span, &PyType_Type, &document, &PyTuple_Type,
                          &p.indexes))
        return NULL;
    Py_ssize_t n;
    const char *bytes = PyUnicode_AsUTF8AndSize(text, &n);
    if (bytes == NULL)
        return NULL; /* not UTF-8 (a lone surrogate): the caller's general path reports it */
    if (!yaml_parser_initialize(&p.parser))
        return PyErr_NoMemory();
    /* No encoding set, as PyYAML's parser sets none for a str: libyaml detects UTF-8 and skips
     * a leading byte order mark (with UTF-8 set, it reads the mark as content). */
    yaml_parser_set_input_string(&p.parser, (const unsigned char *)bytes, (size_t)n);
    PyObject *out = documents(&p, max_documents, document);
    if (p.has_event)
        yaml_event_delete(&p.event);
    yaml_parser_delete(&p.parser);
    if (out == NULL && p.general && !PyErr_Occurred())
        Py_RETURN_NONE;
    return out;
}

static PyObject *version(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyUnicode_FromString(yaml_get_version_string());
}

static PyMethodDef methods[] = {
    {"plain", plain, METH_VARARGS, "yamlsafe's plain path over libyaml's events (see the C source)."},
    {"version", version, METH_NOARGS, "The version of the libyaml this module calls."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_yamlplain", "yamlsafe's plain path in C.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__yamlplain(void)
{
    LINE = PyUnicode_InternFromString("line");
    FIELDS = PyUnicode_InternFromString("fields");
    INDEX = PyUnicode_InternFromString("index");
    VALUE = PyUnicode_InternFromString("value");
    SPAN = PyUnicode_InternFromString("span");
    if (LINE == NULL || FIELDS == NULL || INDEX == NULL || VALUE == NULL || SPAN == NULL)
        return NULL;
    return PyModule_Create(&module);
}
