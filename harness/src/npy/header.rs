//! The `.npy` header: the magic string, the format version, the header length and the Python
//! dict literal with `descr`, `fortran_order` and `shape`, padded so the data starts 64-aligned.

use super::{Dtype, NpyError};

/// The first six bytes of every `.npy` file.
pub(super) const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// numpy pads the header so the data starts at a multiple of this.
pub(super) const ALIGN: usize = 64;

/// The header of a C-order little-endian file: magic, version, length, dictionary, padding.
pub(super) fn encode_header(
    shape: &[usize],
    len: usize,
    dtype: Dtype,
) -> Result<Vec<u8>, NpyError> {
    let expected = element_count(shape)?;
    if expected != len {
        return Err(NpyError::ShapeMismatch {
            expected,
            actual: len,
        });
    }
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_text}, }}",
        dtype.descr()
    );
    // Version 1.0 stores the header length in 2 bytes, 2.0 in 4.
    let v1_total = MAGIC.len() + 2 + 2 + dict.len() + 1;
    let (major, prefix) = if v1_total.next_multiple_of(ALIGN) - MAGIC.len() - 4 <= u16::MAX as usize
    {
        (1u8, MAGIC.len() + 4)
    } else {
        (2u8, MAGIC.len() + 6)
    };
    let total = (prefix + dict.len() + 1).next_multiple_of(ALIGN);
    dict.extend(std::iter::repeat_n(' ', total - prefix - dict.len() - 1));
    dict.push('\n');
    let mut bytes = Vec::with_capacity(total);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[major, 0]);
    if major == 1 {
        bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    } else {
        bytes.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    }
    bytes.extend_from_slice(dict.as_bytes());
    Ok(bytes)
}

/// The number of elements of `shape`, or a [`NpyError::BadHeader`] when it overflows.
pub(super) fn element_count(shape: &[usize]) -> Result<usize, NpyError> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| NpyError::BadHeader("the shape's size overflows".into()))
}

/// Splits a file into its header dictionary's fields and the bytes after the header, checking
/// the magic string, the version and the dictionary's syntax.
pub(super) fn split_header(bytes: &[u8]) -> Result<(HeaderFields, &[u8]), NpyError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(NpyError::BadMagic);
    }
    let rest = &bytes[MAGIC.len()..];
    let (major, minor) = match rest {
        [major, minor, ..] => (*major, *minor),
        _ => return Err(NpyError::BadHeader("file ends inside the version".into())),
    };
    let len_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => return Err(NpyError::UnsupportedVersion(major, minor)),
    };
    let rest = &rest[2..];
    if rest.len() < len_bytes {
        return Err(NpyError::BadHeader(
            "file ends inside the header length".into(),
        ));
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([rest[0], rest[1]]) as usize
    } else {
        u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize
    };
    let rest = &rest[len_bytes..];
    let header = rest
        .get(..header_len)
        .ok_or_else(|| NpyError::BadHeader("file ends inside the header".into()))?;
    let data = &rest[header_len..];
    // Versions 1 and 2 are latin-1; 3 is UTF-8. The fields we read are ASCII either way.
    let text: String = if major == 3 {
        std::str::from_utf8(header)
            .map_err(|_| NpyError::BadHeader("header is not UTF-8".into()))?
            .to_owned()
    } else {
        header.iter().map(|&b| b as char).collect()
    };
    Ok((parse_header(&text)?, data))
}

/// The three fields of a header dictionary.
pub(super) struct HeaderFields {
    /// The element type, as numpy spells it (`'<f4'`).
    pub descr: String,
    /// Whether the data is in Fortran (column-major) order.
    pub fortran_order: bool,
    /// Extent of each axis.
    pub shape: Vec<usize>,
}

/// Parses the Python dict literal of the header: `{'descr': '<f4', 'fortran_order': False,
/// 'shape': (2, 3), }`, keys in any order, either quote style.
fn parse_header(text: &str) -> Result<HeaderFields, NpyError> {
    let bad = |why: &str| NpyError::BadHeader(why.to_string());
    let mut p = Parser {
        s: text.trim_end_matches(['\n', ' ', '\x00']).as_bytes(),
        i: 0,
    };
    p.expect(b'{')
        .ok_or_else(|| bad("does not start with '{'"))?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string().ok_or_else(|| bad("expected a quoted key"))?;
        p.expect(b':')
            .ok_or_else(|| bad("expected ':' after a key"))?;
        match key.as_str() {
            "descr" => descr = Some(p.string().ok_or_else(|| bad("'descr' is not a string"))?),
            "fortran_order" => {
                fortran = Some(
                    p.boolean()
                        .ok_or_else(|| bad("'fortran_order' is not True or False"))?,
                )
            }
            "shape" => {
                shape = Some(
                    p.tuple()
                        .ok_or_else(|| bad("'shape' is not a tuple of integers"))?,
                )
            }
            other => return Err(bad(&format!("unexpected key '{other}'"))),
        }
        p.skip_ws();
        if !p.eat(b',') {
            p.expect(b'}')
                .ok_or_else(|| bad("expected ',' or '}' after a value"))?;
            break;
        }
    }
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(bad("text after the closing '}'"));
    }
    Ok(HeaderFields {
        descr: descr.ok_or_else(|| bad("no 'descr'"))?,
        fortran_order: fortran.ok_or_else(|| bad("no 'fortran_order'"))?,
        shape: shape.ok_or_else(|| bad("no 'shape'"))?,
    })
}

/// A cursor over the header text.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.skip_ws();
        self.eat(c).then_some(())
    }

    fn string(&mut self) -> Option<String> {
        self.skip_ws();
        let quote = *self.s.get(self.i).filter(|&&q| q == b'\'' || q == b'"')?;
        let start = self.i + 1;
        let len = self.s.get(start..)?.iter().position(|&c| c == quote)?;
        self.i = start + len + 1;
        Some(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn boolean(&mut self) -> Option<bool> {
        self.skip_ws();
        for (word, value) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s.get(self.i..)?.starts_with(word) {
                self.i += word.len();
                return Some(value);
            }
        }
        None
    }

    fn tuple(&mut self) -> Option<Vec<usize>> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(b')') {
                return Some(dims);
            }
            let start = self.i;
            while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
                self.i += 1;
            }
            // numpy may write Python 2 longs as `3L`.
            let digits = std::str::from_utf8(&self.s[start..self.i]).ok()?;
            dims.push(digits.parse().ok()?);
            self.eat(b'L');
            self.skip_ws();
            if !self.eat(b',') {
                self.expect(b')')?;
                return Some(dims);
            }
        }
    }
}
