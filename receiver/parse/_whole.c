/* The check and write phases of a whole-event function (receiver/parse/compiled.py), compiled.

   `compiled.compile_event` writes, per key layout, a Python function that checks every value
   and then writes the document. Where this module was built, that function leaves both phases
   to `run(program, values, document, mapper, http)`: a program is one step per key
   (`compiled._program`), each given by `compiled._event_key` beside the Python lines of its
   kind and doing what they do, in the same order. tests/parse/test_whole_events.py holds
   documents written this way equal to the Python way's and to the general path's.

   `run` answers None when a value is unusual (the document is untouched: the general path
   takes the event), else (duration, status, termination, request_line) for the function's
   tail. Errors are raised as Python raises them. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

enum {
    SKIP, STR, INT, BYTES_UPLOADED, DURATION, STATUS, ADDRESS, FRONTEND, TERMINATION, REQUEST,
    METHOD, PATH, URI, QUERY, VERSION, CALL, CONTENT,
    /* a text line's checked integer text */
    TEXT_INT, TEXT_BOOL, TEXT_BYTES_UPLOADED, TEXT_STATUS, TEXT_DURATION,
    KINDS
};

typedef struct {
    int code;
    int flag;          /* DURATION: `Tt` (always the duration); ADDRESS: the first address */
    PyObject *name;    /* the field */
    PyObject *other;   /* BYTES_UPLOADED: the TCP name; ADDRESS: the ip field; CALL: handler */
    PyObject *key;     /* CALL: the log-format key */
} Step;

typedef struct {
    Py_ssize_t count;
    Step *steps;
    PyObject *ips, *is_ip, *terminations, *related, *transport, *ssl, *zero;
} Program;

static const char CAPSULE[] = "receiver.parse._whole.program";

static void program_free(PyObject *capsule) {
    Program *program = PyCapsule_GetPointer(capsule, CAPSULE);
    if (program == NULL)
        return;
    for (Py_ssize_t i = 0; i < program->count; i++) {
        Py_XDECREF(program->steps[i].name);
        Py_XDECREF(program->steps[i].other);
        Py_XDECREF(program->steps[i].key);
    }
    PyMem_Free(program->steps);
    Py_XDECREF(program->ips);
    Py_XDECREF(program->is_ip);
    Py_XDECREF(program->terminations);
    Py_XDECREF(program->related);
    Py_XDECREF(program->transport);
    Py_XDECREF(program->ssl);
    Py_XDECREF(program->zero);
    PyMem_Free(program);
}

static PyObject *optional(PyObject *object) {
    if (object == Py_None)
        return NULL;
    Py_INCREF(object);
    return object;
}

/* program(steps, ips, is_ip, terminations, related, transport) -> capsule
   steps: ((code, flag, name, other, key), ...) */
static PyObject *make_program(PyObject *module, PyObject *args) {
    PyObject *steps, *ips, *is_ip, *terminations, *related, *transport;
    if (!PyArg_ParseTuple(args, "O!O!OO!UU", &PyTuple_Type, &steps, &PyDict_Type, &ips, &is_ip,
                          &PyDict_Type, &terminations, &related, &transport))
        return NULL;
    Program *program = PyMem_Calloc(1, sizeof(Program));
    if (program == NULL)
        return PyErr_NoMemory();
    Py_ssize_t count = PyTuple_GET_SIZE(steps);
    program->steps = PyMem_Calloc(count ? (size_t)count : 1, sizeof(Step));
    if (program->steps == NULL) {
        PyMem_Free(program);
        return PyErr_NoMemory();
    }
    program->count = count;
    PyObject *capsule = PyCapsule_New(program, CAPSULE, program_free);
    if (capsule == NULL) {
        PyMem_Free(program->steps);
        PyMem_Free(program);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *name, *other, *key;
        int code, flag;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(steps, i), "iiOOO", &code, &flag, &name, &other,
                              &key)) {
            Py_DECREF(capsule);
            return NULL;
        }
        if (code < 0 || code >= KINDS) {
            PyErr_Format(PyExc_ValueError, "unknown step %d", code);
            Py_DECREF(capsule);
            return NULL;
        }
        Step *step = &program->steps[i];
        step->code = code;
        step->flag = flag;
        step->name = optional(name);
        step->other = optional(other);
        step->key = optional(key);
    }
    Py_INCREF(ips);
    program->ips = ips;
    Py_INCREF(is_ip);
    program->is_ip = is_ip;
    Py_INCREF(terminations);
    program->terminations = terminations;
    Py_INCREF(related);
    program->related = related;
    Py_INCREF(transport);
    program->transport = transport;
    program->ssl = PyUnicode_FromString("ssl");
    program->zero = PyLong_FromLong(0);
    if (program->ssl == NULL || program->zero == NULL) {
        Py_DECREF(capsule);
        return NULL;
    }
    return capsule;
}

/* -- what the generated Python spells, one helper each ------------------------------------ */

/* `type(v) is str and v == text` */
static int equals(PyObject *value, const char *text) {
    return PyUnicode_CheckExact(value) && PyUnicode_CompareWithASCIIString(value, text) == 0;
}

/* `v[:n] == prefix` for a str `v` (ASCII prefix) */
static int starts(PyObject *value, const char *prefix, Py_ssize_t n) {
    if (PyUnicode_GET_LENGTH(value) < n)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (PyUnicode_READ_CHAR(value, i) != (Py_UCS4)(unsigned char)prefix[i])
            return 0;
    return 1;
}

/* `'#' not in v` for a str `v` */
static int without_hash(PyObject *value) {
    return PyUnicode_FindChar(value, '#', 0, PyUnicode_GET_LENGTH(value), 1) == -1;
}

/* `v and v != '-'` for a str or None `v` */
static int given(PyObject *value) {
    return value != Py_None && PyUnicode_GET_LENGTH(value) > 0 && !equals(value, "-");
}

/* `type(v) is int and v <= INT64_MAX` (JSON integers from orjson: never below INT64_MIN) */
static int long_at_most_int64(PyObject *value) {
    if (!PyLong_CheckExact(value))
        return 0;
    int overflow;
    PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow == 0 && PyErr_Occurred())
        PyErr_Clear();
    return overflow <= 0;
}

/* `v >= 0`, -1 on error */
static int not_negative(Program *program, PyObject *value) {
    return PyObject_RichCompareBool(value, program->zero, Py_GE);
}

/* `fields._IPV4.fullmatch(v)` for a str `v`: four octets 0-255 written without leading zeros,
   joined by dots (a client's usual address, and often a new one: checked here, without the
   call to `is_ip` that would also remember it). */
static int dotted_quad(PyObject *value) {
    Py_ssize_t length = PyUnicode_GET_LENGTH(value);
    if (length < 7 || length > 15)
        return 0;
    int kind = PyUnicode_KIND(value);
    const void *data = PyUnicode_DATA(value);
    Py_ssize_t at = 0;
    for (int octet = 0; octet < 4; octet++) {
        if (octet > 0) {
            if (at >= length || PyUnicode_READ(kind, data, at) != '.')
                return 0;
            at++;
        }
        int digits = 0, number = 0;
        while (at < length && digits < 4) {
            Py_UCS4 c = PyUnicode_READ(kind, data, at);
            if (c < '0' || c > '9')
                break;
            if (digits == 1 && number == 0)
                return 0;  /* a leading zero */
            number = number * 10 + (int)(c - '0');
            digits++;
            at++;
        }
        if (digits == 0 || digits > 3 || number > 255)
            return 0;
    }
    return at == length;
}

static int check(Program *program, Step *step, PyObject *value, PyObject **converted) {
    switch (step->code) {
    case STR: case FRONTEND: case REQUEST: case METHOD:
        return value == Py_None || PyUnicode_CheckExact(value);
    case INT: case BYTES_UPLOADED: case DURATION:
        return value == Py_None || long_at_most_int64(value);
    case STATUS:
        if (value == Py_None)
            return 1;
        if (!long_at_most_int64(value))
            return 0;
        return not_negative(program, value);
    case ADDRESS: {
        if (!PyUnicode_CheckExact(value))
            return 0;
        PyObject *known = PyDict_GetItemWithError(program->ips, value);
        if (known != NULL) {
            int truth = PyObject_IsTrue(known);
            if (truth != 0)
                return truth;
        } else if (PyErr_Occurred()) {
            return -1;
        }
        if (dotted_quad(value))
            return 1;
        PyObject *valid = PyObject_CallOneArg(program->is_ip, value);
        if (valid == NULL)
            return -1;
        int truth = PyObject_IsTrue(valid);
        Py_DECREF(valid);
        return truth;
    }
    case TERMINATION:
        if (value == Py_None)
            return 1;
        if (!PyUnicode_CheckExact(value))
            return 0;
        if (PyUnicode_GET_LENGTH(value) == 0)
            return 1;
        return PyDict_Contains(program->terminations, value);
    case PATH:
        return value == Py_None
            || (PyUnicode_CheckExact(value) && starts(value, "/", 1) && without_hash(value));
    case URI:
        return value == Py_None || (PyUnicode_CheckExact(value) && starts(value, "/", 1));
    case QUERY:
        return value == Py_None
            || (PyUnicode_CheckExact(value)
                && ((starts(value, "?", 1) && without_hash(value))
                    || PyUnicode_GET_LENGTH(value) == 0));
    case VERSION:
        return value == Py_None || (PyUnicode_CheckExact(value) && starts(value, "HTTP/", 5));
    case TEXT_STATUS: {
        PyObject *number = PyNumber_Long(value);
        if (number == NULL)
            return -1;
        *converted = number;
        return not_negative(program, number);
    }
    default:
        return 1;
    }
}

static int set(PyObject *doc, PyObject *name, PyObject *value) {
    return PyDict_SetItem(doc, name, value);
}

static int set_new(PyObject *doc, PyObject *name, PyObject *value) {
    if (value == NULL)
        return -1;
    int failed = PyDict_SetItem(doc, name, value);
    Py_DECREF(value);
    return failed;
}

/* `related.ip`: [v] for the first address, else added once (fields.add_related_ip) */
static int relate(Program *program, Step *step, PyObject *doc, PyObject *value) {
    PyObject *related = step->flag ? NULL : PyDict_GetItemWithError(doc, program->related);
    if (related == NULL) {
        if (PyErr_Occurred())
            return -1;
        PyObject *list = PyList_New(1);
        if (list != NULL)
            PyList_SET_ITEM(list, 0, Py_NewRef(value));
        return set_new(doc, program->related, list);
    }
    int found = PySequence_Contains(related, value);
    if (found != 0)
        return found < 0 ? -1 : 0;
    if (PyList_CheckExact(related))
        return PyList_Append(related, value);
    PyObject *appended = PyObject_CallMethod(related, "append", "O", value);
    Py_XDECREF(appended);
    return appended == NULL ? -1 : 0;
}

typedef struct {
    PyObject *duration, *status, *termination, *request_line;  /* strong references */
} Tail;

static void hold(PyObject **slot, PyObject *value) {
    Py_INCREF(value);
    Py_XSETREF(*slot, value);
}

static int write_step(Program *program, Step *step, PyObject *doc, PyObject *value,
                      PyObject *converted, PyObject *mapper, int http, Tail *tail) {
    switch (step->code) {
    case STR:
        return given(value) ? set(doc, step->name, value) : 0;
    case INT: case PATH: case URI:
        return value == Py_None ? 0 : set(doc, step->name, value);
    case BYTES_UPLOADED:
        if (value == Py_None)
            return 0;
        return set(doc, http ? step->name : step->other, value);
    case DURATION: case TEXT_DURATION: {
        PyObject *number = value;
        if (step->code == TEXT_DURATION) {
            number = PyNumber_Long(value);
            if (number == NULL)
                return -1;
        } else if (value == Py_None) {
            return 0;
        }
        int failed = set(doc, step->name, number);
        int positive = failed ? -1 : not_negative(program, number);
        if (positive > 0 && (step->flag || tail->duration == NULL))
            hold(&tail->duration, number);
        if (number != value)
            Py_DECREF(number);
        return positive < 0 ? -1 : 0;
    }
    case STATUS:
        if (value == Py_None)
            return 0;
        hold(&tail->status, value);
        return set(doc, step->name, value);
    case TEXT_STATUS:
        hold(&tail->status, converted);
        return set(doc, step->name, converted);
    case ADDRESS:
        if (set(doc, step->name, value) < 0 || set(doc, step->other, value) < 0)
            return -1;
        return relate(program, step, doc, value);
    case FRONTEND: {
        if (!given(value))
            return 0;
        if (set(doc, step->name, value) < 0)
            return -1;
        Py_ssize_t length = PyUnicode_GET_LENGTH(value);
        if (PyUnicode_READ_CHAR(value, length - 1) == '~')
            return set(doc, program->transport, program->ssl);
        return 0;
    }
    case TERMINATION: {
        if (value == Py_None || PyUnicode_GET_LENGTH(value) == 0)
            return 0;
        PyObject *fields = PyDict_GetItemWithError(program->terminations, value);
        if (fields == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_KeyError, value);
            return -1;
        }
        hold(&tail->termination, value);
        return PyDict_Update(doc, fields);
    }
    case REQUEST:
        if (!given(value))
            return 0;
        hold(&tail->request_line, value);
        return set(doc, step->name, value);
    case METHOD:
        return given(value) && !equals(value, "<BADREQ>") ? set(doc, step->name, value) : 0;
    case QUERY:
        if (value == Py_None || PyUnicode_GET_LENGTH(value) == 0 || equals(value, "?"))
            return 0;
        return set_new(doc, step->name,
                       PyUnicode_Substring(value, 1, PyUnicode_GET_LENGTH(value)));
    case VERSION:
        if (value == Py_None)
            return 0;
        return set_new(doc, step->name,
                       PyUnicode_Substring(value, 5, PyUnicode_GET_LENGTH(value)));
    case CALL: {
        if (value == Py_None)
            return 0;
        PyObject *done = PyObject_CallFunctionObjArgs(step->other, mapper, step->key, step->name,
                                                      value, doc, Py_None,
                                                      http ? Py_True : Py_False, NULL);
        Py_XDECREF(done);
        return done == NULL ? -1 : 0;
    }
    case CONTENT:
        if (value == Py_None || equals(value, "-"))
            return 0;
        return set(doc, step->name, value);
    case TEXT_INT:
        return set_new(doc, step->name, PyNumber_Long(value));
    case TEXT_BOOL: {
        PyObject *number = PyNumber_Long(value);
        if (number == NULL)
            return -1;
        int truth = PyObject_IsTrue(number);
        Py_DECREF(number);
        if (truth < 0)
            return -1;
        return set(doc, step->name, truth ? Py_True : Py_False);
    }
    case TEXT_BYTES_UPLOADED:
        return set_new(doc, http ? step->name : step->other, PyNumber_Long(value));
    default:
        return 0;
    }
}

#define SMALL 128

/* run(program, values, doc, mapper, http) -> None | (duration, status, termination, line) */
static PyObject *run(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyTuple_CheckExact(args[1]) || !PyDict_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "run(program, values: tuple, doc: dict, mapper, http)");
        return NULL;
    }
    Program *program = PyCapsule_GetPointer(args[0], CAPSULE);
    if (program == NULL)
        return NULL;
    PyObject *values = args[1], *doc = args[2], *mapper = args[3];
    int http = PyObject_IsTrue(args[4]);
    if (http < 0)
        return NULL;
    Py_ssize_t count = program->count;
    if (PyTuple_GET_SIZE(values) != count) {
        PyErr_SetString(PyExc_ValueError, "run: as many values as steps");
        return NULL;
    }
    PyObject *small[SMALL];
    PyObject **converted = count <= SMALL ? small
        : PyMem_Calloc((size_t)count, sizeof(PyObject *));
    if (converted == NULL)
        return PyErr_NoMemory();
    if (converted == small)
        memset(small, 0, sizeof(PyObject *) * (size_t)count);
    PyObject *result = NULL;
    int usual = 1;
    for (Py_ssize_t i = 0; i < count && usual > 0; i++)
        usual = check(program, &program->steps[i], PyTuple_GET_ITEM(values, i), &converted[i]);
    if (usual < 0)
        goto done;
    if (usual == 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    Tail tail = {NULL, NULL, NULL, NULL};
    int failed = 0;
    for (Py_ssize_t i = 0; i < count && !failed; i++)
        failed = write_step(program, &program->steps[i], doc, PyTuple_GET_ITEM(values, i),
                            converted[i], mapper, http, &tail) < 0;
    if (!failed)
        result = PyTuple_Pack(4, tail.duration ? tail.duration : Py_None,
                              tail.status ? tail.status : Py_None,
                              tail.termination ? tail.termination : Py_None,
                              tail.request_line ? tail.request_line : Py_None);
    Py_XDECREF(tail.duration);
    Py_XDECREF(tail.status);
    Py_XDECREF(tail.termination);
    Py_XDECREF(tail.request_line);
done:
    for (Py_ssize_t i = 0; i < count; i++)
        Py_XDECREF(converted[i]);
    if (converted != small)
        PyMem_Free(converted);
    return result;
}

/* dotted_quad(text) -> bool: `dotted_quad` for tests to hold equal to `fields._IPV4` */
static PyObject *dotted_quad_test(PyObject *module, PyObject *text) {
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "dotted_quad(text: str)");
        return NULL;
    }
    return PyBool_FromLong(dotted_quad(text));
}

static PyMethodDef methods[] = {
    {"dotted_quad", dotted_quad_test, METH_O,
     "dotted_quad(text): four octets 0-255 without leading zeros, joined by dots."},
    {"program", make_program, METH_VARARGS,
     "program(steps, ips, is_ip, terminations, related, transport): a shape's steps, compiled."},
    {"run", (PyCFunction)(void (*)(void))run, METH_FASTCALL,
     "run(program, values, doc, mapper, http): check every value, then write the document; "
     "None (untouched) when a value is unusual, else (duration, status, termination, line)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_whole",
    "The check and write phases of a whole-event function (see receiver/parse/compiled.py).",
    -1, methods, NULL, NULL, NULL, NULL,
};

/* The step codes, by name: compiled.py reads them here (their one definition is the enum). */
static const char *const CODE_NAMES[KINDS] = {
    "SKIP", "STR", "INT", "BYTES_UPLOADED", "DURATION", "STATUS", "ADDRESS", "FRONTEND",
    "TERMINATION", "REQUEST", "METHOD", "PATH", "URI", "QUERY", "VERSION", "CALL", "CONTENT",
    "TEXT_INT", "TEXT_BOOL", "TEXT_BYTES_UPLOADED", "TEXT_STATUS", "TEXT_DURATION",
};

PyMODINIT_FUNC PyInit__whole(void) {
    PyObject *made = PyModule_Create(&module);
    if (made == NULL)
        return NULL;
    for (int code = 0; code < KINDS; code++) {
        if (PyModule_AddIntConstant(made, CODE_NAMES[code], code) < 0) {
            Py_DECREF(made);
            return NULL;
        }
    }
    return made;
}
