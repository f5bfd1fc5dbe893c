/* The nested `_source` bytes of a flat document, written by a plan (receiver/ship/nesting.py).

   `nesting.nest` is the definition and `NestedEncoder` its Python way; this module is the same
   thing without a dict per object: a plan is a tuple of (literal bytes, value position) steps
   made in Python from `nest` (`nesting.steps`), and `write(steps, names, document)` appends,
   step by step, the literal (keys, braces, commas) and then the JSON of the document's value at
   that position (-1: none). Values are encoded as orjson encodes them: str, int (64-bit,
   signed or unsigned), bool, None and lists of those here; anything else (float, dict, a
   subclass) by calling `fallback` (orjson.dumps) on it. tests/ship/test_nesting.py holds the
   bytes equal to `orjson.dumps(nest(document))`.

   `write` returns None when the document's names are not `names` (the same str objects in the
   same order, or equal ones): the caller then finds the plan for its names. `append` writes the
   same bytes into a bulk body after the item's action line (encode.py's hot loop), and answers
   False for another document's names. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

typedef struct {
    char *data;
    Py_ssize_t length;
    Py_ssize_t capacity;
} Buffer;

static int grow(Buffer *buffer, Py_ssize_t more) {
    Py_ssize_t needed = buffer->length + more;
    if (needed <= buffer->capacity)
        return 0;
    Py_ssize_t capacity = buffer->capacity * 2;
    if (capacity < needed)
        capacity = needed;
    char *data = PyMem_Realloc(buffer->data, (size_t)capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    buffer->data = data;
    buffer->capacity = capacity;
    return 0;
}

static int append(Buffer *buffer, const char *bytes, Py_ssize_t length) {
    if (grow(buffer, length) < 0)
        return -1;
    memcpy(buffer->data + buffer->length, bytes, (size_t)length);
    buffer->length += length;
    return 0;
}

static const char HEX[] = "0123456789abcdef";

/* A JSON string: `"` and `\` escaped, control characters as orjson writes them. */
static int append_string(Buffer *buffer, PyObject *text) {
    Py_ssize_t length;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &length);
    if (utf8 == NULL) { /* surrogates: what orjson says of them */
        PyErr_SetString(PyExc_TypeError, "str is not valid UTF-8: surrogates not allowed");
        return -1;
    }
    if (grow(buffer, length * 6 + 2) < 0)
        return -1;
    char *out = buffer->data + buffer->length;
    *out++ = '"';
    for (Py_ssize_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)utf8[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *out++ = (char)c;
            continue;
        }
        *out++ = '\\';
        switch (c) {
        case '"': *out++ = '"'; break;
        case '\\': *out++ = '\\'; break;
        case '\n': *out++ = 'n'; break;
        case '\t': *out++ = 't'; break;
        case '\r': *out++ = 'r'; break;
        case '\b': *out++ = 'b'; break;
        case '\f': *out++ = 'f'; break;
        default:
            *out++ = 'u'; *out++ = '0'; *out++ = '0';
            *out++ = HEX[c >> 4]; *out++ = HEX[c & 15];
        }
    }
    *out++ = '"';
    buffer->length = out - buffer->data;
    return 0;
}

/* Decimal digits of an unsigned 64-bit number (snprintf costs several times more). */
static int append_decimal(Buffer *buffer, unsigned long long number, int negative) {
    char digits[24];
    char *end = digits + sizeof digits, *at = end;
    do {
        *--at = (char)('0' + number % 10);
        number /= 10;
    } while (number);
    if (negative)
        *--at = '-';
    return append(buffer, at, end - at);
}

/* Arrays nested deeper than this are left to the fallback whole, so that its own rules (its
   recursion limit) apply to deep values, not ours. */
#define DEEPEST 8

static int append_value(Buffer *buffer, PyObject *value, PyObject *fallback, int depth);
static int append_encoded(Buffer *buffer, PyObject *value, PyObject *fallback);

/* A list or tuple (orjson writes both as arrays). */
static int append_array(Buffer *buffer, PyObject *array, PyObject *fallback, int depth) {
    if (depth >= DEEPEST)
        return append_encoded(buffer, array, fallback);
    if (append(buffer, "[", 1) < 0)
        return -1;
    PyObject **items = PySequence_Fast_ITEMS(array);
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(array); i++) {
        if (i > 0 && append(buffer, ",", 1) < 0)
            return -1;
        if (append_value(buffer, items[i], fallback, depth + 1) < 0)
            return -1;
    }
    return append(buffer, "]", 1);
}

static int append_value(Buffer *buffer, PyObject *value, PyObject *fallback, int depth) {
    if (PyUnicode_CheckExact(value))
        return append_string(buffer, value);
    if (PyLong_CheckExact(value)) {
        int overflow;
        long long signed_value = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow == 0) {
            if (signed_value == -1 && PyErr_Occurred())
                return -1;
            return signed_value < 0
                ? append_decimal(buffer, 0ULL - (unsigned long long)signed_value, 1)
                : append_decimal(buffer, (unsigned long long)signed_value, 0);
        }
        if (overflow > 0) {
            unsigned long long unsigned_value = PyLong_AsUnsignedLongLong(value);
            if (!(unsigned_value == (unsigned long long)-1 && PyErr_Occurred()))
                return append_decimal(buffer, unsigned_value, 0);
            PyErr_Clear();
        }
        PyErr_SetString(PyExc_TypeError, "Integer exceeds 64-bit range");
        return -1;
    }
    if (value == Py_True)
        return append(buffer, "true", 4);
    if (value == Py_False)
        return append(buffer, "false", 5);
    if (value == Py_None)
        return append(buffer, "null", 4);
    if (PyList_CheckExact(value) || PyTuple_CheckExact(value))
        return append_array(buffer, value, fallback, depth);
    return append_encoded(buffer, value, fallback);
}

/* Anything else (float, dict, a subclass): the fallback's bytes. */
static int append_encoded(Buffer *buffer, PyObject *value, PyObject *fallback) {
    PyObject *encoded = PyObject_CallOneArg(fallback, value);
    if (encoded == NULL)
        return -1;
    if (!PyBytes_Check(encoded)) {
        Py_DECREF(encoded);
        PyErr_SetString(PyExc_TypeError, "the fallback encoder must return bytes");
        return -1;
    }
    int failed = append(buffer, PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded));
    Py_DECREF(encoded);
    return failed;
}

#define SMALL 128
#define KEPT_AT_MOST (1 << 20)

/* The output buffer, kept between calls (up to 1 MiB: a huge document's is freed). A call
   takes it and gives it back at the end, so a call made meanwhile (none is expected: the GIL is
   held, and orjson runs no Python code) would only allocate its own. */
static Buffer kept = {NULL, 0, 0};

static Buffer take(void) {
    Buffer buffer = kept;
    kept = (Buffer){NULL, 0, 0};
    buffer.length = 0;
    return buffer;
}

static void give_back(Buffer *buffer) {
    if (buffer->capacity > KEPT_AT_MOST || kept.data != NULL) {
        PyMem_Free(buffer->data);
        return;
    }
    kept = *buffer;
}

/* The nested JSON of `document` by `steps` into `buffer` (taken); 1 written, 2 written with
   names equal to `names` but not the same objects, 0 when the document's names are not `names`
   (nothing written), -1 on error. */
static int build(Buffer *buffer, PyObject *steps, PyObject *names, PyObject *document,
                 PyObject *fallback) {
    Py_ssize_t size = PyTuple_GET_SIZE(names);
    if (PyDict_GET_SIZE(document) != size)
        return 0;
    /* The document's values by position, once its names are checked to be the plan's. */
    PyObject *small[SMALL];
    PyObject **values = size <= SMALL ? small : PyMem_Malloc(sizeof(PyObject *) * (size_t)size);
    if (values == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int result = -1, same = 1;
    Py_ssize_t position = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(document, &position, &key, &value)) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        if (key != name) {
            int equal = PyUnicode_CheckExact(key) ? PyUnicode_Compare(key, name) : -1;
            if (equal != 0) {
                if (PyErr_Occurred())
                    PyErr_Clear();
                result = 0;
                goto done;
            }
            same = 0;
        }
        values[i++] = value; /* borrowed: the dict is not changed while we write */
    }
    if (grow(buffer, 256 + size * 32) < 0)
        goto done;
    for (Py_ssize_t s = 0; s < PyTuple_GET_SIZE(steps); s++) {
        PyObject *step = PyTuple_GET_ITEM(steps, s);
        if (!PyTuple_CheckExact(step) || PyTuple_GET_SIZE(step) != 2
            || !PyBytes_CheckExact(PyTuple_GET_ITEM(step, 0))) {
            PyErr_SetString(PyExc_TypeError, "a step is (bytes, int)");
            goto done;
        }
        PyObject *literal = PyTuple_GET_ITEM(step, 0);
        Py_ssize_t at = PyLong_AsSsize_t(PyTuple_GET_ITEM(step, 1));
        if (at == -1 && PyErr_Occurred())
            goto done;
        if (at >= size) {
            PyErr_SetString(PyExc_ValueError, "a step names a value the document does not have");
            goto done;
        }
        if (append(buffer, PyBytes_AS_STRING(literal), PyBytes_GET_SIZE(literal)) < 0)
            goto done;
        if (at >= 0 && append_value(buffer, values[at], fallback, 0) < 0)
            goto done;
    }
    result = same ? 1 : 2;
done:
    if (values != small)
        PyMem_Free(values);
    return result;
}

static int plan_arguments(PyObject *const *args, const char *usage) {
    if (!PyTuple_CheckExact(args[0]) || !PyTuple_CheckExact(args[1]) || !PyDict_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    return 0;
}

/* write(steps, names, document, fallback) -> bytes | None */
static PyObject *nested_write(PyObject *module, PyObject *const *args, Py_ssize_t count) {
    static const char usage[] = "write(steps: tuple, names: tuple, document: dict, fallback)";
    if (count != 4) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    if (plan_arguments(args, usage) < 0)
        return NULL;
    Buffer buffer = take();
    PyObject *result = NULL;
    int built = build(&buffer, args[0], args[1], args[2], args[3]);
    if (built > 0)  /* (equal names that are other objects: the caller's plan lookup decides) */
        result = PyBytes_FromStringAndSize(buffer.data, buffer.length);
    else if (built == 0)
        result = Py_NewRef(Py_None);
    give_back(&buffer);
    return result;
}

/* Lowercase hex digits of `number` (what `format(n, "x")` writes) into `out`; their count. */
static Py_ssize_t hex_digits(unsigned long long number, char *out) {
    char digits[16];
    Py_ssize_t count = 0;
    do {
        digits[count++] = HEX[number & 15];
        number >>= 4;
    } while (number);
    for (Py_ssize_t i = 0; i < count; i++)
        out[i] = digits[count - 1 - i];
    return count;
}

/* append(buffer, head, offset, end, steps, names, document, fallback) -> int
   buffer += head [+ hex(offset) + end, when offset >= 0] + the nested JSON + b"\n": 1, or 2 when
   the document's names equal `names` without being the same objects (the caller takes the
   document's, which the next documents most likely share: each name is then compared by
   identity); 0 (and nothing appended) when its names are not `names`; on an error nothing. */
static PyObject *nested_append(PyObject *module, PyObject *const *args, Py_ssize_t count) {
    static const char usage[] = "append(buffer: bytearray, head: bytes, offset: int, end: bytes, "
                                "steps: tuple, names: tuple, document: dict, fallback)";
    if (count != 8 || !PyByteArray_CheckExact(args[0]) || !PyBytes_CheckExact(args[1])
        || !PyLong_CheckExact(args[2]) || !PyBytes_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    if (plan_arguments(args + 4, usage) < 0)
        return NULL;
    PyObject *target = args[0], *head = args[1], *end = args[3];
    int overflow;
    long long offset = PyLong_AsLongLongAndOverflow(args[2], &overflow);
    if (overflow != 0 || (offset == -1 && PyErr_Occurred())) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_OverflowError, "append: the offset exceeds 64 bits");
        return NULL;
    }
    Buffer buffer = take();
    int built = build(&buffer, args[4], args[5], args[6], args[7]);
    PyObject *result = NULL;
    if (built == 0)
        result = PyLong_FromLong(0);
    if (built > 0) {
        char hex[16];
        Py_ssize_t hex_length = offset >= 0 ? hex_digits((unsigned long long)offset, hex) : 0;
        Py_ssize_t head_length = PyBytes_GET_SIZE(head);
        Py_ssize_t end_length = offset >= 0 ? PyBytes_GET_SIZE(end) : 0;
        Py_ssize_t before = PyByteArray_GET_SIZE(target);
        if (PyByteArray_Resize(target, before + head_length + hex_length + end_length
                                       + buffer.length + 1) == 0) {
            char *at = PyByteArray_AS_STRING(target) + before;
            memcpy(at, PyBytes_AS_STRING(head), (size_t)head_length);
            at += head_length;
            memcpy(at, hex, (size_t)hex_length);
            at += hex_length;
            memcpy(at, PyBytes_AS_STRING(end), (size_t)end_length);
            at += end_length;
            memcpy(at, buffer.data, (size_t)buffer.length);
            at[buffer.length] = '\n';
            result = PyLong_FromLong(built);
        }
    }
    give_back(&buffer);
    return result;
}

static PyMethodDef methods[] = {
    {"write", (PyCFunction)(void (*)(void))nested_write, METH_FASTCALL,
     "write(steps, names, document, fallback): the nested JSON of `document` by a plan's steps, "
     "or None when its names are not `names`."},
    {"append", (PyCFunction)(void (*)(void))nested_append, METH_FASTCALL,
     "append(buffer, head, offset, end, steps, names, document, fallback): buffer += head, the "
     "offset in hex and `end` (offset >= 0), the nested JSON and a newline: 1, or 2 when the "
     "names were equal but other objects; 0 (nothing appended) when the document's names are "
     "not `names`."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_nested",
    "The nested `_source` bytes of a flat document, by a plan (see receiver/ship/nesting.py).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__nested(void) { return PyModule_Create(&module); }
