//! Reading the pickled sessions Flask-Session 0.4–0.6 stored, plain data only.
//!
//! Flask-Session up to 0.6 stored `pickle.dumps(dict(session))`; 0.7+ still reads those values
//! and rewrites them as MessagePack on the next write. Satchel does the same for pickles of plain
//! data — dict, str, int, float, bool, None, list, tuple, bytes, bytearray, set and frozenset, in
//! protocols 0 to 5 — and refuses any pickle that needs another class or global as corrupt data.
//! Nothing is ever imported or executed: the only "globals" understood are the builtin data
//! constructors Python itself writes for bytes, bytearray and sets in old protocols.
//!
//! Written by hand rather than with `serde-pickle`, because that crate materialises every memo
//! reference by cloning the value, so a pickle of a few hundred bytes that references a list
//! twice per level expands exponentially ("billion laughs"), and its recursive values can
//! overflow the stack on deep nesting, both while building and while dropping. Here the pickle
//! machine keeps its objects in a flat arena and the memo holds indices into it (so shared
//! references and mutations through `APPEND`/`SETITEM` behave as in Python), every length read
//! from the input is checked against the bytes that remain before anything is allocated, and the
//! conversion to MessagePack values is bounded in nodes, bytes and nesting depth (a cycle hits
//! the depth limit).
//!
//! ```
//! use satchel_core::pickle;
//!
//! // python3 -c "import pickle,sys; sys.stdout.buffer.write(pickle.dumps({'user': 'alice'}, protocol=4))"
//! let bytes = b"\x80\x04\x95\x13\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x04user\x94\x8c\x05alice\x94s.";
//! let session = pickle::decode(bytes).unwrap();
//! assert_eq!(session["user"], rmpv::Value::from("alice"));
//!
//! // pickle.dumps(collections.OrderedDict(), protocol=4): a class, refused, never imported.
//! let bytes = b"\x80\x04\x95\"\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94.";
//! assert!(pickle::decode(bytes).is_err());
//! ```

use std::collections::HashMap;

use indexmap::IndexMap;
use rmpv::Value;

use crate::codec::SessionData;

/// Pickles longer than this are refused unread; Flask sessions are far smaller.
pub const MAX_PICKLE_LEN: usize = 1 << 20;

/// At most this many MessagePack values (map keys included) come out of one pickle.
const MAX_OUTPUT_NODES: usize = 100_000;

/// At most this many bytes of text and binary come out of one pickle (memo references can
/// repeat one string many times).
const MAX_OUTPUT_BYTES: usize = 4 * MAX_PICKLE_LEN;

/// At most this many bytes may be copied while running the pickle (`set(list)`,
/// `_codecs.encode(str)` and friends copy their argument, which may be a memoized big value).
const MAX_COPY_BYTES: usize = 4 * MAX_PICKLE_LEN;

/// Values nested deeper than this are refused; a container that contains itself hits it.
const MAX_DEPTH: usize = 128;

/// The newest pickle protocol (Python 3.8+).
const HIGHEST_PROTOCOL: u8 = 5;

/// Why a pickle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PickleError {
    /// The input is longer than [`MAX_PICKLE_LEN`].
    #[error("pickle is {len} bytes, more than the {MAX_PICKLE_LEN} Satchel reads")]
    TooLarge {
        /// Length of the input.
        len: usize,
    },
    /// The input ends before the pickle's `STOP`.
    #[error("pickle ends before its STOP opcode")]
    Truncated,
    /// The pickle uses an opcode that builds objects, loads buffers or is unknown.
    #[error("pickle opcode {opcode:#04x} is not one of the plain-data opcodes Satchel reads")]
    Opcode {
        /// The refused opcode byte.
        opcode: u8,
    },
    /// The pickle needs a global other than the builtin data constructors.
    #[error("pickle needs the global {0:?}, which is not plain data")]
    Global(String),
    /// The pickle is not well-formed.
    #[error("malformed pickle: {0}")]
    Malformed(&'static str),
    /// The pickle holds a value with no MessagePack form (an integer beyond 64 bits, a lone
    /// surrogate, a dict key that is neither text nor integer).
    #[error("pickle holds a value Satchel cannot represent: {0}")]
    Unrepresentable(&'static str),
    /// The pickle expands beyond one of the reader's limits.
    #[error("pickle exceeds the limit on {0}")]
    Limit(&'static str),
    /// The pickled value is not a dict with text keys.
    #[error("pickled value is not a session (a dict with text keys)")]
    NotASession,
}

type Result<T, E = PickleError> = std::result::Result<T, E>;

/// Reads a pickled Flask session (a dict with text keys) into a [`SessionData`].
///
/// Bytes after the pickle's `STOP` are refused (Python ignores them, but Flask-Session never
/// writes any, so they mean the value is not a pickle).
pub fn decode(bytes: &[u8]) -> Result<SessionData> {
    if bytes.len() > MAX_PICKLE_LEN {
        return Err(PickleError::TooLarge { len: bytes.len() });
    }
    let mut machine = Machine::new(bytes);
    let root = machine.run()?;
    Converter::new(&machine.nodes).session(root)
}

/// An index into the arena. The arena holds at most one node per input byte, so u32 suffices.
type Id = u32;

/// The builtin callables a plain-data pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Builtin {
    /// `_codecs.encode(str, encoding)`: bytes in protocols 0–2.
    Encode,
    /// `builtins.bytes()`: empty bytes in protocols 0–2.
    Bytes,
    /// `builtins.bytearray(...)`: bytearray before protocol 5.
    ByteArray,
    /// `builtins.set(list)`: set before protocol 4.
    Set,
    /// `builtins.frozenset(list)`: frozenset before protocol 4.
    FrozenSet,
}

impl Builtin {
    fn resolve(module: &[u8], name: &[u8]) -> Result<Builtin> {
        // Protocols 0–2 name Python 2's `__builtin__`; Python 3 maps it to `builtins`.
        let builtin = match (module, name) {
            (b"_codecs", b"encode") => Some(Builtin::Encode),
            (b"builtins" | b"__builtin__", b"bytes") => Some(Builtin::Bytes),
            (b"builtins" | b"__builtin__", b"bytearray") => Some(Builtin::ByteArray),
            (b"builtins" | b"__builtin__", b"set") => Some(Builtin::Set),
            (b"builtins" | b"__builtin__", b"frozenset") => Some(Builtin::FrozenSet),
            _ => None,
        };
        builtin.ok_or_else(|| {
            // Only for the error message; kept short because it comes from untrusted input.
            let mut global = String::from_utf8_lossy(module).into_owned();
            global.push('.');
            global.push_str(&String::from_utf8_lossy(name));
            PickleError::Global(global.chars().take(80).collect())
        })
    }
}

/// One Python object in the arena. Containers hold ids, so memo references share, not copy.
#[derive(Debug)]
enum Node {
    None,
    Bool(bool),
    /// Always within `i64::MIN..=u64::MAX`; larger integers are refused when read.
    Int(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    /// A set or frozenset; both become arrays. Python would refuse unhashable members; they
    /// are harmless here, so they are not checked.
    Set {
        items: Vec<Id>,
        frozen: bool,
    },
    Builtin(Builtin),
}

/// The pickle virtual machine, restricted to the opcodes that build plain data.
struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    nodes: Vec<Node>,
    stack: Vec<Id>,
    /// Stack lengths at each `MARK`; values below the top mark are out of reach, as in Python.
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
    copy_budget: usize,
}

impl<'a> Machine<'a> {
    fn new(input: &'a [u8]) -> Machine<'a> {
        Machine {
            input,
            pos: 0,
            nodes: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            copy_budget: MAX_COPY_BYTES,
        }
    }

    fn run(&mut self) -> Result<Id> {
        loop {
            let opcode = self.byte()?;
            match opcode {
                // PROTO
                0x80 => {
                    if self.byte()? > HIGHEST_PROTOCOL {
                        return Err(PickleError::Malformed("unsupported protocol"));
                    }
                }
                // FRAME: framing only groups opcodes for buffering; its length must still fit.
                0x95 => {
                    let len = self.u64_le()?;
                    self.check_len(len)?;
                }
                // STOP
                b'.' => {
                    let root = self.pop()?;
                    if self.pos != self.input.len() {
                        return Err(PickleError::Malformed("bytes after STOP"));
                    }
                    return Ok(root);
                }
                // MARK
                b'(' => self.marks.push(self.stack.len()),
                // POP: with nothing above the mark, Python pops the mark instead.
                b'0' => {
                    if self.stack.len() > self.mark_floor() {
                        self.pop()?;
                    } else {
                        self.pop_mark()?;
                    }
                }
                // POP_MARK
                b'1' => {
                    self.pop_mark()?;
                }
                // DUP
                b'2' => {
                    let top = self.top()?;
                    self.stack.push(top);
                }

                // Scalars.
                b'N' => self.push(Node::None)?,
                0x88 => self.push(Node::Bool(true))?,
                0x89 => self.push(Node::Bool(false))?,
                // INT: text; `01`/`00` are protocol 0's True and False.
                b'I' => {
                    let line = self.line()?;
                    let node = match line {
                        b"01" => Node::Bool(true),
                        b"00" => Node::Bool(false),
                        _ => Node::Int(parse_decimal(line)?),
                    };
                    self.push(node)?;
                }
                // BININT, BININT1, BININT2
                b'J' => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.push(Node::Int(v.into()))?;
                }
                b'K' => {
                    let v = self.byte()?;
                    self.push(Node::Int(v.into()))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.push(Node::Int(v.into()))?;
                }
                // LONG: text with an optional `L` suffix.
                b'L' => {
                    let line = self.line()?;
                    let digits = line.strip_suffix(b"L").unwrap_or(line);
                    self.push(Node::Int(parse_decimal(digits)?))?;
                }
                // LONG1, LONG4: little-endian two's complement.
                0x8a => {
                    let len = usize::from(self.byte()?);
                    let data = self.take(len)?;
                    self.push(Node::Int(decode_long(data)?))?;
                }
                0x8b => {
                    let len = i32::from_le_bytes(self.array()?);
                    let len = u64::try_from(len)
                        .map_err(|_| PickleError::Malformed("negative LONG4 length"))?;
                    let data = self.take_u64(len)?;
                    self.push(Node::Int(decode_long(data)?))?;
                }
                // FLOAT (text), BINFLOAT (big-endian double).
                b'F' => {
                    let line = self.line()?;
                    let v = std::str::from_utf8(line)
                        .ok()
                        .and_then(|s| s.trim().parse::<f64>().ok())
                        .ok_or(PickleError::Malformed("bad FLOAT"))?;
                    self.push(Node::Float(v))?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.push(Node::Float(v))?;
                }

                // Text: UNICODE (raw-unicode-escape line), BINUNICODE, SHORT_BINUNICODE,
                // BINUNICODE8 (UTF-8).
                b'V' => {
                    let line = self.line()?;
                    let s = raw_unicode_escape(line)?;
                    self.push(Node::Str(s))?;
                }
                b'X' => {
                    let len = u32::from_le_bytes(self.array()?);
                    let data = self.take_u64(len.into())?;
                    self.push_utf8(data)?;
                }
                0x8c => {
                    let len = usize::from(self.byte()?);
                    let data = self.take(len)?;
                    self.push_utf8(data)?;
                }
                0x8d => {
                    let len = self.u64_le()?;
                    let data = self.take_u64(len)?;
                    self.push_utf8(data)?;
                }
                // Python 2 byte strings (STRING, BINSTRING, SHORT_BINSTRING), which Python 3's
                // `pickle.loads` decodes as ASCII text by default.
                b'S' => {
                    let line = self.line()?;
                    let s = decode_py2_string(line)?;
                    self.push(Node::Str(s))?;
                }
                b'T' => {
                    let len = i32::from_le_bytes(self.array()?);
                    let len = u64::try_from(len)
                        .map_err(|_| PickleError::Malformed("negative BINSTRING length"))?;
                    let data = self.take_u64(len)?;
                    self.push_ascii(data)?;
                }
                b'U' => {
                    let len = usize::from(self.byte()?);
                    let data = self.take(len)?;
                    self.push_ascii(data)?;
                }

                // Bytes: BINBYTES, SHORT_BINBYTES, BINBYTES8; BYTEARRAY8.
                b'B' => {
                    let len = u32::from_le_bytes(self.array()?);
                    let data = self.take_u64(len.into())?;
                    self.push(Node::Bytes(data.to_vec()))?;
                }
                b'C' => {
                    let len = usize::from(self.byte()?);
                    let data = self.take(len)?;
                    self.push(Node::Bytes(data.to_vec()))?;
                }
                0x8e | 0x96 => {
                    let len = self.u64_le()?;
                    let data = self.take_u64(len)?;
                    self.push(Node::Bytes(data.to_vec()))?;
                }

                // Containers.
                b']' => self.push(Node::List(Vec::new()))?,
                b')' => self.push(Node::Tuple(Vec::new()))?,
                b'}' => self.push(Node::Dict(Vec::new()))?,
                0x8f => self.push(Node::Set {
                    items: Vec::new(),
                    frozen: false,
                })?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items))?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(opcode - 0x84);
                    let floor = self.mark_floor();
                    if self.stack.len() < floor + n {
                        return Err(PickleError::Malformed("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Node::Tuple(items))?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(&items)?;
                    self.push(Node::Dict(pairs))?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Node::Set {
                        items,
                        frozen: true,
                    })?;
                }
                // APPEND, APPENDS
                b'a' => {
                    let value = self.pop()?;
                    let list = self.top()?;
                    self.list(list)?.push(value);
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.list(list)?.extend(items);
                }
                // SETITEM, SETITEMS
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let dict = self.top()?;
                    self.dict(dict)?.push((key, value));
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(&items)?;
                    let dict = self.top()?;
                    self.dict(dict)?.extend(pairs);
                }
                // ADDITEMS: only into a (mutable) set, as in Python.
                0x90 => {
                    let items = self.pop_mark()?;
                    let set = self.top()?;
                    match self.node_mut(set)? {
                        Node::Set {
                            items: existing,
                            frozen: false,
                        } => existing.extend(items),
                        _ => return Err(PickleError::Malformed("ADDITEMS target is not a set")),
                    }
                }

                // Memo: PUT, BINPUT, LONG_BINPUT, MEMOIZE; GET, BINGET, LONG_BINGET.
                b'p' => {
                    let index = parse_index(self.line()?)?;
                    self.put(index)?;
                }
                b'q' => {
                    let index = self.byte()?;
                    self.put(index.into())?;
                }
                b'r' => {
                    let index = u32::from_le_bytes(self.array()?);
                    self.put(index.into())?;
                }
                0x94 => {
                    let index = self.memo.len() as u64;
                    self.put(index)?;
                }
                b'g' => {
                    let index = parse_index(self.line()?)?;
                    self.get(index)?;
                }
                b'h' => {
                    let index = self.byte()?;
                    self.get(index.into())?;
                }
                b'j' => {
                    let index = u32::from_le_bytes(self.array()?);
                    self.get(index.into())?;
                }

                // Globals: GLOBAL, STACK_GLOBAL; only the builtin data constructors resolve.
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let builtin = Builtin::resolve(module, name)?;
                    self.push(Node::Builtin(builtin))?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Node::Str(module), Node::Str(name)) =
                        (self.node(module)?, self.node(name)?)
                    else {
                        return Err(PickleError::Malformed("STACK_GLOBAL needs two strings"));
                    };
                    let builtin = Builtin::resolve(module.as_bytes(), name.as_bytes())?;
                    self.push(Node::Builtin(builtin))?;
                }
                // REDUCE: call one of the builtins above with a tuple of arguments.
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let node = self.reduce(callable, args)?;
                    self.push(node)?;
                }

                // Everything else builds arbitrary objects (INST, OBJ, NEWOBJ, NEWOBJ_EX, BUILD,
                // EXT1/2/4), loads persistent ids or out-of-band buffers, or is not an opcode.
                _ => return Err(PickleError::Opcode { opcode }),
            }
        }
    }

    // Reading input. Every length is checked against what remains before it is used.

    fn byte(&mut self) -> Result<u8> {
        let b = *self.input.get(self.pos).ok_or(PickleError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(len).ok_or(PickleError::Truncated)?;
        let data = self
            .input
            .get(self.pos..end)
            .ok_or(PickleError::Truncated)?;
        self.pos = end;
        Ok(data)
    }

    fn check_len(&self, len: u64) -> Result<usize> {
        let remaining = self.input.len() - self.pos;
        usize::try_from(len)
            .ok()
            .filter(|&len| len <= remaining)
            .ok_or(PickleError::Truncated)
    }

    fn take_u64(&mut self, len: u64) -> Result<&'a [u8]> {
        let len = self.check_len(len)?;
        self.take(len)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let data = self.take(N)?;
        data.try_into().map_err(|_| PickleError::Truncated)
    }

    fn u64_le(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A text argument, up to (not including) its newline.
    fn line(&mut self) -> Result<&'a [u8]> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated)?;
        self.pos += len + 1;
        Ok(&rest[..len])
    }

    // The arena and the stack.

    fn push(&mut self, node: Node) -> Result<()> {
        let id = Id::try_from(self.nodes.len()).map_err(|_| PickleError::Limit("objects"))?;
        self.nodes.push(node);
        self.stack.push(id);
        Ok(())
    }

    fn push_utf8(&mut self, data: &[u8]) -> Result<()> {
        let s = std::str::from_utf8(data).map_err(|_| {
            PickleError::Unrepresentable("text that is not UTF-8 (a lone surrogate)")
        })?;
        self.push(Node::Str(s.to_owned()))
    }

    fn push_ascii(&mut self, data: &[u8]) -> Result<()> {
        if !data.is_ascii() {
            return Err(PickleError::Malformed("Python 2 string that is not ASCII"));
        }
        self.push_utf8(data)
    }

    fn mark_floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Id> {
        if self.stack.len() <= self.mark_floor() {
            return Err(PickleError::Malformed("stack underflow"));
        }
        self.stack
            .pop()
            .ok_or(PickleError::Malformed("stack underflow"))
    }

    fn top(&self) -> Result<Id> {
        if self.stack.len() <= self.mark_floor() {
            return Err(PickleError::Malformed("stack underflow"));
        }
        self.stack
            .last()
            .copied()
            .ok_or(PickleError::Malformed("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>> {
        let mark = self.marks.pop().ok_or(PickleError::Malformed("no MARK"))?;
        // A mark never lies above the stack: pops stop at the top mark.
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn node(&self, id: Id) -> Result<&Node> {
        self.nodes
            .get(id as usize)
            .ok_or(PickleError::Malformed("dangling reference"))
    }

    fn node_mut(&mut self, id: Id) -> Result<&mut Node> {
        self.nodes
            .get_mut(id as usize)
            .ok_or(PickleError::Malformed("dangling reference"))
    }

    fn list(&mut self, id: Id) -> Result<&mut Vec<Id>> {
        match self.node_mut(id)? {
            Node::List(items) => Ok(items),
            _ => Err(PickleError::Malformed("APPEND target is not a list")),
        }
    }

    fn dict(&mut self, id: Id) -> Result<&mut Vec<(Id, Id)>> {
        match self.node_mut(id)? {
            Node::Dict(entries) => Ok(entries),
            _ => Err(PickleError::Malformed("SETITEM target is not a dict")),
        }
    }

    fn put(&mut self, index: u64) -> Result<()> {
        let top = self.top()?;
        self.memo.insert(index, top);
        Ok(())
    }

    fn get(&mut self, index: u64) -> Result<()> {
        let id = *self
            .memo
            .get(&index)
            .ok_or(PickleError::Malformed("memo key not found"))?;
        self.stack.push(id);
        Ok(())
    }

    fn reduce(&mut self, callable: Id, args: Id) -> Result<Node> {
        let Node::Builtin(builtin) = *self.node(callable)? else {
            return Err(PickleError::Malformed("REDUCE of something not callable"));
        };
        let Node::Tuple(args) = self.node(args)? else {
            return Err(PickleError::Malformed("REDUCE arguments are not a tuple"));
        };
        // Borrow the arena and the copy budget separately, so the cost is paid before copying.
        let nodes = &self.nodes;
        let args: Vec<&Node> = args
            .iter()
            .map(|&id| {
                nodes
                    .get(id as usize)
                    .ok_or(PickleError::Malformed("dangling reference"))
            })
            .collect::<Result<_>>()?;
        let cost = match args.as_slice() {
            [Node::Str(s), ..] => s.len(),
            [Node::Bytes(data)] => data.len(),
            [Node::List(items) | Node::Tuple(items) | Node::Set { items, .. }] => {
                items.len() * std::mem::size_of::<Id>()
            }
            _ => 0,
        };
        self.copy_budget = self
            .copy_budget
            .checked_sub(cost)
            .ok_or(PickleError::Limit("bytes copied while reading"))?;
        let set = |items: Vec<Id>| Node::Set {
            items,
            frozen: builtin == Builtin::FrozenSet,
        };
        Ok(match (builtin, args.as_slice()) {
            (Builtin::Encode, [Node::Str(s)]) => Node::Bytes(s.as_bytes().to_vec()),
            (Builtin::Encode, [Node::Str(s), Node::Str(encoding)])
            | (Builtin::Bytes | Builtin::ByteArray, [Node::Str(s), Node::Str(encoding)]) => {
                Node::Bytes(encode(s, encoding)?)
            }
            (Builtin::Bytes | Builtin::ByteArray, []) => Node::Bytes(Vec::new()),
            (Builtin::Bytes | Builtin::ByteArray, [Node::Bytes(data)]) => Node::Bytes(data.clone()),
            (Builtin::Set | Builtin::FrozenSet, []) => set(Vec::new()),
            (
                Builtin::Set | Builtin::FrozenSet,
                [Node::List(items) | Node::Tuple(items) | Node::Set { items, .. }],
            ) => set(items.clone()),
            _ => return Err(PickleError::Malformed("unexpected arguments to a builtin")),
        })
    }
}

/// Splits a marked run of items into key/value pairs.
fn pairs(items: &[Id]) -> Result<Vec<(Id, Id)>> {
    if items.len() % 2 != 0 {
        return Err(PickleError::Malformed("odd number of dict items"));
    }
    Ok(items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect())
}

/// `str.encode(encoding)` for the encodings Python's pickler uses for bytes.
fn encode(s: &str, encoding: &str) -> Result<Vec<u8>> {
    match encoding.to_ascii_lowercase().replace('_', "-").as_str() {
        "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" => s
            .chars()
            .map(|c| u8::try_from(u32::from(c)).ok())
            .collect::<Option<Vec<u8>>>()
            .ok_or(PickleError::Malformed(
                "text beyond Latin-1 encoded as Latin-1",
            )),
        "utf8" | "utf-8" => Ok(s.as_bytes().to_vec()),
        _ => Err(PickleError::Malformed("unexpected encoding for bytes")),
    }
}

/// Integers Satchel can store: anything that fits `i64` or `u64`.
fn check_int(v: i128) -> Result<i128> {
    if (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(&v) {
        Ok(v)
    } else {
        Err(PickleError::Unrepresentable("an integer beyond 64 bits"))
    }
}

/// A decimal integer as Python's pickler writes it (`-5`, `4611686018427387904`).
fn parse_decimal(text: &[u8]) -> Result<i128> {
    let text = text.trim_ascii();
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(PickleError::Malformed("bad integer text"));
    }
    let mut v: i128 = 0;
    for &d in digits {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(d - b'0')))
            .ok_or(PickleError::Unrepresentable("an integer beyond 64 bits"))?;
    }
    check_int(if negative { -v } else { v })
}

/// A memo index written as text (`p12`, `g12`).
fn parse_index(text: &[u8]) -> Result<u64> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or(PickleError::Malformed("bad memo index"))
}

/// LONG1/LONG4's little-endian two's complement, refused beyond 64 bits.
fn decode_long(data: &[u8]) -> Result<i128> {
    let negative = data.last().is_some_and(|b| b & 0x80 != 0);
    let fill = if negative { 0xff } else { 0x00 };
    // Bytes above the last one that differs from the sign fill add nothing.
    let significant = data.iter().rposition(|&b| b != fill).map_or(0, |i| i + 1);
    if significant > 9 {
        return Err(PickleError::Unrepresentable("an integer beyond 64 bits"));
    }
    let mut bytes = [fill; 16];
    bytes[..significant].copy_from_slice(&data[..significant]);
    check_int(i128::from_le_bytes(bytes))
}

/// Python's `raw-unicode-escape` decoding, which protocol 0's UNICODE opcode uses: bytes are
/// Latin-1 characters except `\uXXXX` and `\UXXXXXXXX`.
fn raw_unicode_escape(data: &[u8]) -> Result<String> {
    let mut out = String::with_capacity(data.len());
    let mut i = 0;
    while let Some(&c) = data.get(i) {
        i += 1;
        if c != b'\\' {
            out.push(char::from(c));
            continue;
        }
        let digits = match data.get(i) {
            Some(b'u') => 4,
            Some(b'U') => 8,
            Some(&other) => {
                out.push('\\');
                out.push(char::from(other));
                i += 1;
                continue;
            }
            None => {
                out.push('\\');
                continue;
            }
        };
        let hex = data
            .get(i + 1..i + 1 + digits)
            .ok_or(PickleError::Malformed("truncated \\u escape"))?;
        i += 1 + digits;
        let code = hex_value(hex).ok_or(PickleError::Malformed("bad \\u escape"))?;
        out.push(char::from_u32(code).ok_or(PickleError::Unrepresentable(
            "a lone surrogate or a code point beyond U+10FFFF",
        ))?);
    }
    Ok(out)
}

fn hex_value(hex: &[u8]) -> Option<u32> {
    hex.iter().try_fold(0u32, |acc, &h| {
        let digit = char::from(h).to_digit(16)?;
        acc.checked_mul(16)?.checked_add(digit)
    })
}

/// Protocol 0's STRING: a quoted Python 2 `repr`, unescaped as `codecs.escape_decode` does,
/// then decoded as ASCII as Python 3's `pickle.loads` does by default.
fn decode_py2_string(line: &[u8]) -> Result<String> {
    let inner = match line {
        [q @ (b'"' | b'\''), inner @ .., last] if last == q => inner,
        _ => return Err(PickleError::Malformed("STRING argument is not quoted")),
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while let Some(&c) = inner.get(i) {
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *inner
            .get(i)
            .ok_or(PickleError::Malformed("trailing backslash in STRING"))?;
        i += 1;
        match e {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(e),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match inner.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' => {
                let hex = inner
                    .get(i..i + 2)
                    .and_then(hex_value)
                    .ok_or(PickleError::Malformed("bad \\x escape in STRING"))?;
                i += 2;
                out.push((hex & 0xff) as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    if !out.is_ascii() {
        return Err(PickleError::Malformed("Python 2 string that is not ASCII"));
    }
    String::from_utf8(out).map_err(|_| PickleError::Malformed("Python 2 string that is not ASCII"))
}

/// A dict key as Python compares it, borrowed from the arena.
#[derive(Debug, PartialEq, Eq, Hash)]
enum Key<'n> {
    Str(&'n str),
    Int(i128),
}

/// Turns arena nodes into MessagePack values within the output budgets.
struct Converter<'n> {
    nodes: &'n [Node],
    nodes_left: usize,
    bytes_left: usize,
}

impl<'n> Converter<'n> {
    fn new(nodes: &'n [Node]) -> Converter<'n> {
        Converter {
            nodes,
            nodes_left: MAX_OUTPUT_NODES,
            bytes_left: MAX_OUTPUT_BYTES,
        }
    }

    fn node(&self, id: Id) -> Result<&'n Node> {
        let nodes = self.nodes;
        nodes
            .get(id as usize)
            .ok_or(PickleError::Malformed("dangling reference"))
    }

    fn spend(&mut self, bytes: usize) -> Result<()> {
        self.nodes_left = self
            .nodes_left
            .checked_sub(1)
            .ok_or(PickleError::Limit("values in one session"))?;
        self.bytes_left = self
            .bytes_left
            .checked_sub(bytes)
            .ok_or(PickleError::Limit("bytes in one session"))?;
        Ok(())
    }

    fn session(mut self, root: Id) -> Result<SessionData> {
        let Node::Dict(entries) = self.node(root)? else {
            return Err(PickleError::NotASession);
        };
        let mut session = SessionData::with_capacity(entries.len().min(self.nodes_left));
        for &(key, value) in entries {
            let Node::Str(key) = self.node(key)? else {
                return Err(PickleError::NotASession);
            };
            self.spend(key.len())?;
            let value = self.value(value, 1)?;
            // As in Python, a repeated key keeps its first position and its last value.
            session.insert(key.clone(), value);
        }
        Ok(session)
    }

    fn key(&self, id: Id) -> Result<Key<'n>> {
        match self.node(id)? {
            Node::Str(s) => Ok(Key::Str(s)),
            Node::Int(i) => Ok(Key::Int(*i)),
            _ => Err(PickleError::Unrepresentable(
                "a dict key that is neither text nor an integer",
            )),
        }
    }

    fn value(&mut self, id: Id, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(PickleError::Limit("nesting depth"));
        }
        let node = self.node(id)?;
        let bytes = match node {
            Node::Str(s) => s.len(),
            Node::Bytes(b) => b.len(),
            _ => 0,
        };
        self.spend(bytes)?;
        Ok(match node {
            Node::None => Value::Nil,
            Node::Bool(b) => Value::Boolean(*b),
            Node::Int(i) => int_value(*i)?,
            Node::Float(f) => Value::F64(*f),
            Node::Str(s) => Value::String(s.as_str().into()),
            Node::Bytes(b) => Value::Binary(b.clone()),
            Node::List(items) | Node::Tuple(items) | Node::Set { items, .. } => {
                let mut out = Vec::with_capacity(items.len().min(self.nodes_left));
                for &item in items {
                    out.push(self.value(item, depth + 1)?);
                }
                Value::Array(out)
            }
            Node::Dict(entries) => {
                let mut map: IndexMap<Key<'n>, Value> =
                    IndexMap::with_capacity(entries.len().min(self.nodes_left));
                for &(key, value) in entries {
                    let key = self.key(key)?;
                    let value = self.value(value, depth + 1)?;
                    map.insert(key, value);
                }
                let mut out = Vec::with_capacity(map.len());
                for (key, value) in map {
                    let key = match key {
                        Key::Str(s) => {
                            self.spend(s.len())?;
                            Value::String(s.into())
                        }
                        Key::Int(i) => {
                            self.spend(0)?;
                            int_value(i)?
                        }
                    };
                    out.push((key, value));
                }
                Value::Map(out)
            }
            Node::Builtin(_) => {
                return Err(PickleError::Unrepresentable(
                    "a builtin function as a value",
                ));
            }
        })
    }
}

fn int_value(i: i128) -> Result<Value> {
    if let Ok(i) = i64::try_from(i) {
        Ok(Value::from(i))
    } else if let Ok(u) = u64::try_from(i) {
        Ok(Value::from(u))
    } else {
        Err(PickleError::Unrepresentable("an integer beyond 64 bits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        assert!(text.len() % 2 == 0, "odd hex length");
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    // The session pickled with each protocol, made by:
    // python3 -c "import pickle,sys; sys.stdout.buffer.write(pickle.dumps(SESSION, protocol=N))" | xxd -p
    // with SESSION = {'_permanent': True, 'username': 'alice', 'n': 3, 'f': 1.5, 'none': None, 'l': [1, 'a'], 't': (1, 2), 'b': b'\x00\xff', 'd': {'k': 'v'}, 'big': 2**62, 'neg': -5, 'u': 'héllo ☃ 日本', 'flashes': [('message', 'hi')], 's': {1}}
    const SESSION: [&str; 6] = [
        concat!(
            "286470300a565f7065726d616e656e740a70310a4930310a7356757365726e616d650a70320a5661",
            "6c6963650a70330a73566e0a70340a49330a7356660a70350a46312e350a73566e6f6e650a70360a",
            "4e73566c0a70370a286c70380a49310a6156610a70390a617356740a7031300a2849310a49320a74",
            "7031310a7356620a7031320a635f636f646563730a656e636f64650a7031330a28565c7530303030",
            "ff0a7031340a566c6174696e310a7031350a747031360a527031370a7356640a7031380a28647031",
            "390a566b0a7032300a56760a7032310a7373566269670a7032320a4c343631313638363031383432",
            "373338373930344c0a73566e65670a7032330a492d350a7356750a7032340a5668e96c6c6f205c75",
            "32363033205c75363565355c75363732630a7032350a7356666c61736865730a7032360a286c7032",
            "370a28566d6573736167650a7032380a5668690a7032390a747033300a617356730a7033310a635f",
            "5f6275696c74696e5f5f0a7365740a7033320a28286c7033330a49310a61747033340a527033350a",
            "732e",
        ),
        concat!(
            "7d710028580a0000005f7065726d616e656e7471014930310a5808000000757365726e616d657102",
            "5805000000616c696365710358010000006e71044b035801000000667105473ff800000000000058",
            "040000006e6f6e6571064e58010000006c71075d7108284b01580100000061710965580100000074",
            "710a284b014b0274710b580100000062710c635f636f646563730a656e636f64650a710d28580300",
            "000000c3bf710e58060000006c6174696e31710f74711052711158010000006471127d7113580100",
            "00006b7114580100000076711573580300000062696771164c343631313638363031383432373338",
            "373930344c0a58030000006e656771174afbffffff5801000000757118581100000068c3a96c6c6f",
            "20e2988320e697a5e69cac71195807000000666c6173686573711a5d711b2858070000006d657373",
            "616765711c58020000006869711d74711e61580100000073711f635f5f6275696c74696e5f5f0a73",
            "65740a7120285d71214b0161747122527123752e",
        ),
        concat!(
            "80027d710028580a0000005f7065726d616e656e747101885808000000757365726e616d65710258",
            "05000000616c696365710358010000006e71044b035801000000667105473ff80000000000005804",
            "0000006e6f6e6571064e58010000006c71075d7108284b0158010000006171096558010000007471",
            "0a4b014b0286710b580100000062710c635f636f646563730a656e636f64650a710d580300000000",
            "c3bf710e58060000006c6174696e31710f86711052711158010000006471127d711358010000006b",
            "7114580100000076711573580300000062696771168a08000000000000004058030000006e656771",
            "174afbffffff5801000000757118581100000068c3a96c6c6f20e2988320e697a5e69cac71195807",
            "000000666c6173686573711a5d711b58070000006d657373616765711c58020000006869711d8671",
            "1e61580100000073711f635f5f6275696c74696e5f5f0a7365740a71205d71214b01618571225271",
            "23752e",
        ),
        concat!(
            "80037d710028580a0000005f7065726d616e656e747101885808000000757365726e616d65710258",
            "05000000616c696365710358010000006e71044b035801000000667105473ff80000000000005804",
            "0000006e6f6e6571064e58010000006c71075d7108284b0158010000006171096558010000007471",
            "0a4b014b0286710b580100000062710c430200ff710d580100000064710e7d710f58010000006b71",
            "10580100000076711173580300000062696771128a08000000000000004058030000006e65677113",
            "4afbffffff5801000000757114581100000068c3a96c6c6f20e2988320e697a5e69cac7115580700",
            "0000666c617368657371165d711758070000006d657373616765711858020000006869711986711a",
            "61580100000073711b636275696c74696e730a7365740a711c5d711d4b016185711e52711f752e",
        ),
        concat!(
            "800495cc000000000000007d94288c0a5f7065726d616e656e7494888c08757365726e616d65948c",
            "05616c696365948c016e944b038c016694473ff80000000000008c046e6f6e65944e8c016c945d94",
            "284b018c016194658c0174944b014b0286948c016294430200ff948c0164947d948c016b948c0176",
            "94738c03626967948a0800000000000000408c036e6567944afbffffff8c0175948c1168c3a96c6c",
            "6f20e2988320e697a5e69cac948c07666c6173686573945d948c076d657373616765948c02686994",
            "8694618c0173948f94284b0190752e",
        ),
        concat!(
            "800595cc000000000000007d94288c0a5f7065726d616e656e7494888c08757365726e616d65948c",
            "05616c696365948c016e944b038c016694473ff80000000000008c046e6f6e65944e8c016c945d94",
            "284b018c016194658c0174944b014b0286948c016294430200ff948c0164947d948c016b948c0176",
            "94738c03626967948a0800000000000000408c036e6567944afbffffff8c0175948c1168c3a96c6c",
            "6f20e2988320e697a5e69cac948c07666c6173686573945d948c076d657373616765948c02686994",
            "8694618c0173948f94284b0190752e",
        ),
    ];
    // The same way, with EXTRAS = {'ba': bytearray(b'\x01\xff'), 'fs': frozenset({'x'}), 'e': b'', 'eba': bytearray()}
    const EXTRAS: [&str; 6] = [
        concat!(
            "286470300a5662610a70310a635f5f6275696c74696e5f5f0a6279746561727261790a70320a2863",
            "5f636f646563730a656e636f64650a70330a285601ff0a70340a566c6174696e310a70350a747036",
            "0a5270370a7470380a5270390a735666730a7031300a635f5f6275696c74696e5f5f0a66726f7a65",
            "6e7365740a7031310a28286c7031320a56780a7031330a61747031340a527031350a7356650a7031",
            "360a635f5f6275696c74696e5f5f0a62797465730a7031370a2874527031380a73566562610a7031",
            "390a67320a2874527032300a732e",
        ),
        concat!(
            "7d710028580200000062617101635f5f6275696c74696e5f5f0a6279746561727261790a71022863",
            "5f636f646563730a656e636f64650a710328580300000001c3bf710458060000006c6174696e3171",
            "0574710652710774710852710958020000006673710a635f5f6275696c74696e5f5f0a66726f7a65",
            "6e7365740a710b285d710c580100000078710d6174710e52710f5801000000657110635f5f627569",
            "6c74696e5f5f0a62797465730a71112952711258030000006562617113680229527114752e",
        ),
        concat!(
            "80027d710028580200000062617101635f5f6275696c74696e5f5f0a6279746561727261790a7102",
            "635f636f646563730a656e636f64650a7103580300000001c3bf710458060000006c6174696e3171",
            "0586710652710785710852710958020000006673710a635f5f6275696c74696e5f5f0a66726f7a65",
            "6e7365740a710b5d710c580100000078710d6185710e52710f5801000000657110635f5f6275696c",
            "74696e5f5f0a62797465730a71112952711258030000006562617113680229527114752e",
        ),
        concat!(
            "80037d710028580200000062617101636275696c74696e730a6279746561727261790a7102430201",
            "ff7103857104527105580200000066737106636275696c74696e730a66726f7a656e7365740a7107",
            "5d710858010000007871096185710a52710b580100000065710c4300710d5803000000656261710e",
            "68022952710f752e",
        ),
        concat!(
            "8004954a000000000000007d94288c026261948c086275696c74696e73948c096279746561727261",
            "79949394430201ff94859452948c02667394288c01789491948c0165944300948c03656261946804",
            "295294752e",
        ),
        concat!(
            "80059539000000000000007d94288c0262619496020000000000000001ff948c02667394288c0178",
            "9491948c0165944300948c036562619496000000000000000094752e",
        ),
    ];
    // The rest the same way; each comment gives the pickled value and the protocol.
    // {'o': collections.OrderedDict()}, protocol=0
    const ORDERED_DICT_0: &str = concat!(
        "286470300a566f0a70310a63636f6c6c656374696f6e730a4f726465726564446963740a70320a28",
        "745270330a732e",
    );
    // {'o': collections.OrderedDict()}, protocol=4
    const ORDERED_DICT_4: &str = concat!(
        "80049529000000000000007d948c016f948c0b636f6c6c656374696f6e73948c0b4f726465726564",
        "44696374949394295294732e",
    );
    // {'when': datetime.datetime(2024, 1, 2, 3, 4, 5)}, protocol=2
    const DATETIME_2: &str = concat!(
        "80027d710058040000007768656e7101636461746574696d650a6461746574696d650a7102635f63",
        "6f646563730a656e636f64650a7103580b00000007c3a80102030405000000710458060000006c61",
        "74696e317105867106527107857108527109732e",
    );
    // {'when': datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)}, protocol=5
    const DATETIME_5: &str = concat!(
        "80059561000000000000007d948c047768656e948c086461746574696d65948c086461746574696d",
        "65949394430a07e801020304050000009468028c0874696d657a6f6e6594939468028c0974696d65",
        "64656c74619493944b004b004b00879452948594529486945294732e",
    );
    // {'c': 1j}, protocol=2
    const COMPLEX_2: &str = concat!(
        "80027d71005801000000637101635f5f6275696c74696e5f5f0a636f6d706c65780a710247000000",
        "0000000000473ff0000000000000867103527104732e",
    );
    // a = []; for _ in range(30): a = [a, a]; then {'x': a}, protocol=2
    const LAUGHS_2: &str = concat!(
        "80027d710058010000007871015d7102285d7103285d7104285d7105285d7106285d7107285d7108",
        "285d7109285d710a285d710b285d710c285d710d285d710e285d710f285d7110285d7111285d7112",
        "285d7113285d7114285d7115285d7116285d7117285d7118285d7119285d711a285d711b285d711c",
        "285d711d285d711e285d711f285d7120682065681f65681e65681d65681c65681b65681a65681965",
        "681865681765681665681565681465681365681265681165681065680f65680e65680d65680c6568",
        "0b65680a65680965680865680765680665680565680465680365732e",
    );
    // a = []; a.append(a); then {'a': a}, protocol=2
    const CYCLE_2: &str = "80027d710058010000006171015d7102680261732e";
    // {'max': 2**64 - 1, 'min': -2**63}, protocol=0
    const INTS_0: &str = concat!(
        "286470300a566d61780a70310a4c31383434363734343037333730393535313631354c0a73566d69",
        "6e0a70320a4c2d393232333337323033363835343737353830384c0a732e",
    );
    // {'max': 2**64 - 1, 'min': -2**63}, protocol=2
    const INTS_2: &str = concat!(
        "80027d71002858030000006d617871018a09ffffffffffffffff0058030000006d696e71028a0800",
        "00000000000080752e",
    );
    // {'x': 2**64}, protocol=0
    const TOO_BIG_0: &str =
        "286470300a56780a70310a4c31383434363734343037333730393535313631364c0a732e";
    // {'x': 2**64}, protocol=2
    const TOO_BIG_2: &str = "80027d710058010000007871018a09000000000000000001732e";
    // {'x': -2**63 - 1}, protocol=0
    const TOO_SMALL_0: &str =
        "286470300a56780a70310a4c2d393232333337323033363835343737353830394c0a732e";
    // {'x': -2**63 - 1}, protocol=2
    const TOO_SMALL_2: &str = "80027d710058010000007871018a09ffffffffffffff7fff732e";
    // {'x': 10**100}, protocol=4
    const HUGE_4: &str = concat!(
        "80049534000000000000007d948c0178948a2a000000000000000000000000108f2ea80843b2aa7c",
        "1a218e40ce8af30bcec484270beb7cc39425ad4912732e",
    );
    // {'d': {1: 'one', 'two': 2}}, protocol=4
    const INT_KEYS_4: &str =
        "8004951c000000000000007d948c0164947d94284b018c036f6e65948c0374776f944b0275732e";
    // {'d': {(1, 2): 'x'}}, protocol=4
    const TUPLE_KEY_4: &str = "80049515000000000000007d948c0164947d944b014b0286948c01789473732e";
    // {'d': {True: 'x'}}, protocol=4
    const BOOL_KEY_4: &str = "80049510000000000000007d948c0164947d94888c01789473732e";
    // {1: 'x'}, protocol=4
    const INT_TOP_KEY_4: &str = "8004950a000000000000007d944b018c017894732e";
    // [1, 2], protocol=4
    const LIST_TOP_4: &str = "80049509000000000000005d94284b014b02652e";
    // 'x', protocol=0
    const STR_TOP_0: &str = "56780a70300a2e";
    // None, protocol=2
    const NONE_TOP_2: &str = "80024e2e";
    // {'inf': float('inf'), 'ninf': float('-inf'), 'nan': float('nan'), 'tiny': 5e-324}, protocol=0
    const FLOATS_0: &str = concat!(
        "286470300a56696e660a70310a46696e660a73566e696e660a70320a462d696e660a73566e616e0a",
        "70330a466e616e0a735674696e790a70340a4635652d3332340a732e",
    );
    // {'inf': float('inf'), 'ninf': float('-inf'), 'nan': float('nan'), 'tiny': 5e-324}, protocol=4
    const FLOATS_4: &str = concat!(
        "80049543000000000000007d94288c03696e6694477ff00000000000008c046e696e669447fff000",
        "00000000008c036e616e94477ff80000000000008c0474696e7994470000000000000001752e",
    );
    // {'e': '😀 a\\b\nc\x00\r\x1a'}, protocol=0
    const ESCAPES_0: &str = concat!(
        "286470300a56650a70310a565c55303030316636303020615c7530303563625c7530303061635c75",
        "303030305c75303030645c75303031610a70320a732e",
    );

    fn expected_session() -> SessionData {
        let mut s = SessionData::new();
        s.insert("_permanent".into(), true.into());
        s.insert("username".into(), "alice".into());
        s.insert("n".into(), 3.into());
        s.insert("f".into(), Value::F64(1.5));
        s.insert("none".into(), Value::Nil);
        s.insert("l".into(), Value::Array(vec![1.into(), "a".into()]));
        s.insert("t".into(), Value::Array(vec![1.into(), 2.into()]));
        s.insert("b".into(), Value::Binary(vec![0x00, 0xff]));
        s.insert("d".into(), Value::Map(vec![("k".into(), "v".into())]));
        s.insert("big".into(), (1u64 << 62).into());
        s.insert("neg".into(), (-5).into());
        s.insert("u".into(), "héllo ☃ 日本".into());
        s.insert(
            "flashes".into(),
            Value::Array(vec![Value::Array(vec!["message".into(), "hi".into()])]),
        );
        s.insert("s".into(), Value::Array(vec![1.into()]));
        s
    }

    fn refused(fixture: &str) -> PickleError {
        decode(&hex(fixture)).unwrap_err()
    }

    #[test]
    fn every_protocol_reads_the_same_session_in_python_order() {
        for (protocol, fixture) in SESSION.iter().enumerate() {
            let session =
                decode(&hex(fixture)).unwrap_or_else(|e| panic!("protocol {protocol}: {e}"));
            assert_eq!(session, expected_session(), "protocol {protocol}");
            assert_eq!(
                session.keys().collect::<Vec<_>>(),
                expected_session().keys().collect::<Vec<_>>(),
                "protocol {protocol}"
            );
        }
    }

    #[test]
    fn bytearray_frozenset_and_empty_bytes_read_in_every_protocol() {
        let mut expected = SessionData::new();
        expected.insert("ba".into(), Value::Binary(vec![0x01, 0xff]));
        expected.insert("fs".into(), Value::Array(vec!["x".into()]));
        expected.insert("e".into(), Value::Binary(Vec::new()));
        expected.insert("eba".into(), Value::Binary(Vec::new()));
        for (protocol, fixture) in EXTRAS.iter().enumerate() {
            let session =
                decode(&hex(fixture)).unwrap_or_else(|e| panic!("protocol {protocol}: {e}"));
            assert_eq!(session, expected, "protocol {protocol}");
        }
    }

    #[test]
    fn integers_up_to_64_bits_read_and_larger_ones_are_refused() {
        for fixture in [INTS_0, INTS_2] {
            let session = decode(&hex(fixture)).unwrap();
            assert_eq!(session["max"], Value::from(u64::MAX));
            assert_eq!(session["min"], Value::from(i64::MIN));
        }
        for fixture in [TOO_BIG_0, TOO_BIG_2, TOO_SMALL_0, TOO_SMALL_2, HUGE_4] {
            assert!(matches!(refused(fixture), PickleError::Unrepresentable(_)));
        }
    }

    #[test]
    fn special_floats_and_escaped_text_read_exactly() {
        for fixture in [FLOATS_0, FLOATS_4] {
            let session = decode(&hex(fixture)).unwrap();
            assert_eq!(session["inf"], Value::F64(f64::INFINITY));
            assert_eq!(session["ninf"], Value::F64(f64::NEG_INFINITY));
            assert!(matches!(session["nan"], Value::F64(f) if f.is_nan()));
            assert_eq!(session["tiny"], Value::F64(5e-324));
        }
        let session = decode(&hex(ESCAPES_0)).unwrap();
        assert_eq!(session["e"], Value::from("😀 a\\b\nc\0\r\x1a"));
    }

    #[test]
    fn nested_dicts_may_have_integer_keys_but_nothing_else() {
        let session = decode(&hex(INT_KEYS_4)).unwrap();
        assert_eq!(
            session["d"],
            Value::Map(vec![(1.into(), "one".into()), ("two".into(), 2.into())])
        );
        for fixture in [TUPLE_KEY_4, BOOL_KEY_4] {
            assert!(matches!(refused(fixture), PickleError::Unrepresentable(_)));
        }
    }

    #[test]
    fn a_top_level_value_other_than_a_dict_with_text_keys_is_refused() {
        for fixture in [INT_TOP_KEY_4, LIST_TOP_4, STR_TOP_0, NONE_TOP_2] {
            assert_eq!(refused(fixture), PickleError::NotASession, "{fixture}");
        }
    }

    #[test]
    fn classes_and_other_globals_are_refused_without_importing_them() {
        for (fixture, global) in [
            (ORDERED_DICT_0, "collections.OrderedDict"),
            (ORDERED_DICT_4, "collections.OrderedDict"),
            (DATETIME_2, "datetime.datetime"),
            (DATETIME_5, "datetime.datetime"),
            (COMPLEX_2, "__builtin__.complex"),
        ] {
            assert_eq!(refused(fixture), PickleError::Global(global.into()));
        }
    }

    #[test]
    fn the_classic_os_system_exploit_is_refused() {
        // The textbook payload: `cos\nsystem\n(S'echo pwned'\ntR.`, and its protocol 4 twin
        // through STACK_GLOBAL, and `builtins.eval`.
        let exploits: [&[u8]; 4] = [
            b"cos\nsystem\n(S'echo pwned'\ntR.",
            b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x0aecho pwned\x85R.",
            b"\x80\x02cbuiltins\neval\nX\x0a\x00\x00\x00print('x')\x85R.",
            b"\x80\x02}X\x01\x00\x00\x00xcposix\nsystem\nX\x04\x00\x00\x00true\x85Rs.",
        ];
        for exploit in exploits {
            assert!(
                matches!(decode(exploit), Err(PickleError::Global(_))),
                "{exploit:?}"
            );
        }
    }

    #[test]
    fn object_building_opcodes_are_refused() {
        // NEWOBJ, BUILD, INST, OBJ, PERSID, EXT1, NEXT_BUFFER after a plain dict.
        for opcode in [0x81u8, b'b', b'i', b'o', b'P', 0x82, 0x97, 0x98, 0x92, 0xff] {
            let mut bytes = b"\x80\x05}".to_vec();
            bytes.push(opcode);
            assert_eq!(
                decode(&bytes),
                Err(PickleError::Opcode { opcode }),
                "{opcode:#04x}"
            );
        }
    }

    #[test]
    fn truncated_pickles_are_refused() {
        for fixture in SESSION.iter().chain(EXTRAS.iter()) {
            let bytes = hex(fixture);
            for len in 0..bytes.len() {
                assert!(decode(&bytes[..len]).is_err(), "prefix of {len} bytes");
            }
        }
        assert_eq!(
            decode(b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\xff"),
            Err(PickleError::Truncated)
        );
        assert_eq!(
            decode(b"\x80\x04\x8b\xff\xff\xff\x7f"),
            Err(PickleError::Truncated)
        );
    }

    #[test]
    fn billion_laughs_fails_on_the_output_budget() {
        let bytes = hex(LAUGHS_2);
        assert!(bytes.len() < 400, "a small pickle");
        assert_eq!(
            decode(&bytes),
            Err(PickleError::Limit("values in one session"))
        );
    }

    #[test]
    fn repeated_big_strings_fail_on_the_byte_budgets() {
        let big = "x".repeat(512 * 1024);
        let len = (big.len() as u32).to_le_bytes();
        // {'x': [s, s, ..., s]} with one memoized 512 KiB string: output bytes.
        let mut bytes = b"\x80\x02}X\x01\x00\x00\x00x](X".to_vec();
        bytes.extend_from_slice(&len);
        bytes.extend_from_slice(big.as_bytes());
        bytes.extend_from_slice(b"q\x00");
        for _ in 0..20 {
            bytes.extend_from_slice(b"h\x00");
        }
        bytes.extend_from_slice(b"es.");
        assert_eq!(
            decode(&bytes),
            Err(PickleError::Limit("bytes in one session"))
        );

        // _codecs.encode(s, 'latin1') again and again on the same string: copies while reading.
        let mut bytes = b"\x80\x02c_codecs\nencode\nq\x00X".to_vec();
        bytes.extend_from_slice(&len);
        bytes.extend_from_slice(big.as_bytes());
        bytes.extend_from_slice(b"q\x01X\x06\x00\x00\x00latin1q\x02");
        for _ in 0..100 {
            bytes.extend_from_slice(b"h\x00h\x01h\x02\x86R0");
        }
        bytes.extend_from_slice(b"}.");
        assert_eq!(
            decode(&bytes),
            Err(PickleError::Limit("bytes copied while reading"))
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // {'a': [[[...]]]} 100 000 lists deep: push the lists, then APPEND each into the one below.
        let depth = 100_000;
        let mut bytes = b"\x80\x02}X\x01\x00\x00\x00a".to_vec();
        bytes.extend(std::iter::repeat_n(b']', depth));
        bytes.extend(std::iter::repeat_n(b'a', depth - 1));
        bytes.extend_from_slice(b"s.");
        assert_eq!(decode(&bytes), Err(PickleError::Limit("nesting depth")));
    }

    #[test]
    fn a_list_containing_itself_is_refused() {
        assert_eq!(refused(CYCLE_2), PickleError::Limit("nesting depth"));
    }

    #[test]
    fn memo_references_share_one_object_as_in_python() {
        // d = {}; l = []; d['y'] = l; d['x'] = l (through the memo); l.append(1) afterwards.
        let bytes = b"\x80\x02}X\x01\x00\x00\x00y]q\x01sX\x01\x00\x00\x00xh\x01K\x01as.";
        let session = decode(bytes).unwrap();
        assert_eq!(session["y"], Value::Array(vec![1.into()]));
        assert_eq!(session["x"], Value::Array(vec![1.into()]));
    }

    #[test]
    fn a_repeated_key_keeps_its_first_place_and_last_value() {
        let bytes =
            b"\x80\x02}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bK\x02X\x01\x00\x00\x00aK\x03u.";
        let session = decode(bytes).unwrap();
        assert_eq!(session.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(session["a"], Value::from(3));
    }

    #[test]
    fn python_2_strings_read_as_ascii_text() {
        // Checked against Python 3.11's pickle.loads: {'a': 'bA\nA\\q', 'c': 'de'}.
        let bytes = b"(dp0\nS'a'\np1\nS'b\\x41\\n\\101\\\\q'\np2\nsU\x01cT\x02\x00\x00\x00des.";
        let session = decode(bytes).unwrap();
        assert_eq!(session["a"], Value::from("bA\nA\\q"));
        assert_eq!(session["c"], Value::from("de"));
        assert!(decode(b"(dS'a'\nS'\\xff'\ns.").is_err());
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            &b""[..],
            b".",
            b"not a pickle",
            b"\x80\x06}.",
            b"\x80\x02}.trailing",
            b"(d(s.",
            b"}a.",
            b"]s.",
            b"(}1.",
            b"}h\x07.",
            b"\x80\x04)\x93.",
            b"}(X\x01\x00\x00\x00a.",
            b"\x81\x01\x02",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            decode(&vec![b'N'; MAX_PICKLE_LEN + 1]),
            Err(PickleError::TooLarge {
                len: MAX_PICKLE_LEN + 1
            })
        );
    }

    #[test]
    fn mutated_and_random_bytes_never_panic() {
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for fixture in SESSION
            .iter()
            .chain(EXTRAS.iter())
            .chain([&LAUGHS_2, &CYCLE_2])
        {
            let bytes = hex(fixture);
            for i in 0..bytes.len() {
                for replacement in [0x00, 0xff, b'.', b'(', b'h', 0x94, bytes[i] ^ 1] {
                    let mut mutated = bytes.clone();
                    mutated[i] = replacement;
                    inputs.push(mutated);
                }
            }
        }
        // A small LCG over the opcode alphabet, so no test dependency is needed.
        let alphabet = b"().0123NIJKLMFGVXSTUBC]})l td e a s u p q r g h j c R \x80\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e\x8f\x90\x91\x93\x94\x95\x96\n";
        let mut state: u64 = 0x5eed;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (state >> 59) as usize + 1;
            let mut input = Vec::with_capacity(len);
            for _ in 0..len {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                input.push(alphabet[(state >> 33) as usize % alphabet.len()]);
            }
            inputs.push(input);
        }
        for input in inputs {
            let _ = decode(&input);
        }
    }
}
