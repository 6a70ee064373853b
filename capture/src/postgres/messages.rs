//! Decoding of the message bodies the parser keeps something of: Bind's parameters and result
//! formats, RowDescription, DataRow (the sample), ErrorResponse / NoticeResponse. Every value is
//! capped, binary values are shown as hex and secret-looking ones masked.

use crate::PgError;
use crate::redact::{MASK, is_secret_name};

use super::wire::{ELLIPSIS, Reader, hex, text};

/// Longest parameter / column value / notice / name kept.
pub(super) const VALUE_CAP: usize = 1024;
pub(super) const NOTICE_CAP: usize = 2048;
pub(super) const NAME_CAP: usize = 256;
const PARAMS_KEPT: usize = 256;
const SAMPLE_COLUMNS: usize = 64;
const COLUMNS_KEPT: usize = 1664;

/// Format codes: an int16 count, then the codes.
pub(super) fn read_formats(r: &mut Reader<'_>) -> Vec<i16> {
    let n = r.i16().unwrap_or(0).max(0) as usize;
    (0..n).map_while(|_| r.i16()).collect()
}

/// Format of column / parameter `i` given Bind-style codes (none: text; one: all; else per index).
fn format_of(formats: &[i16], i: usize) -> i16 {
    match formats {
        [] => 0,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(0),
    }
}

/// Bind's parameter formats and values.
pub(super) fn read_params(r: &mut Reader<'_>, secret: impl Fn(usize) -> bool) -> Vec<Option<String>> {
    let formats = read_formats(r);
    read_params_with(r, &formats, secret)
}

pub(super) fn read_params_with(
    r: &mut Reader<'_>,
    formats: &[i16],
    secret: impl Fn(usize) -> bool,
) -> Vec<Option<String>> {
    let n = r.i16().unwrap_or(0).max(0) as usize;
    let mut params = Vec::with_capacity(n.min(PARAMS_KEPT + 1));
    for i in 0..n {
        let Some(len) = r.i32() else { break };
        let value = usize::try_from(len).ok().map(|len| {
            let bytes = r.take_up_to(len);
            if secret(i) {
                MASK.to_string()
            } else if format_of(formats, i) == 1 {
                hex(bytes, VALUE_CAP)
            } else {
                text(bytes, VALUE_CAP)
            }
        });
        if i < PARAMS_KEPT {
            params.push(value);
        } else if i == n - 1 {
            params.push(Some(format!("{ELLIPSIS} {} more", n - PARAMS_KEPT)));
        }
    }
    params
}

pub(super) fn read_row_description(mut r: Reader<'_>) -> (Vec<String>, Vec<i16>) {
    let n = r.i16().unwrap_or(0).max(0) as usize;
    let (mut names, mut formats) = (Vec::new(), Vec::new());
    for _ in 0..n.min(COLUMNS_KEPT) {
        let Some(name) = r.cstr() else { break };
        // Table OID, attribute number, type OID, type size, type modifier, then the format code.
        let format = r.take(16).and_then(|_| r.i16()).unwrap_or(0);
        names.push(text(name, NAME_CAP));
        formats.push(format);
    }
    (names, formats)
}

/// One DataRow for the sample: text columns as text, binary as hex, secret-looking columns masked.
pub(super) fn read_row(mut r: Reader<'_>, columns: &[String], formats: &[i16]) -> Vec<Option<String>> {
    let n = r.i16().unwrap_or(0).max(0) as usize;
    let mut row = Vec::new();
    for i in 0..n.min(SAMPLE_COLUMNS) {
        let Some(len) = r.i32() else {
            row.push(Some(ELLIPSIS.to_string()));
            break;
        };
        let Ok(len) = usize::try_from(len) else {
            row.push(None);
            continue;
        };
        let bytes = r.take_up_to(len.min(VALUE_CAP + 4));
        let cut = len > bytes.len();
        let value = if columns.get(i).is_some_and(|c| is_secret_name(c)) {
            MASK.to_string()
        } else if format_of(formats, i) == 1 {
            hex(bytes, VALUE_CAP)
        } else {
            text(bytes, VALUE_CAP)
        };
        row.push(Some(value));
        if cut {
            // The rest of this value (maybe unbuffered) precedes the next column.
            let skipped = r.take_up_to(len - bytes.len()).len();
            if skipped < len - bytes.len() {
                if let Some(Some(last)) = row.last_mut()
                    && last != MASK
                    && !last.ends_with(ELLIPSIS)
                {
                    last.push_str(ELLIPSIS);
                }
                break;
            }
        }
    }
    row
}

/// ErrorResponse / NoticeResponse fields.
pub(super) fn read_error(mut r: Reader<'_>) -> PgError {
    let mut error =
        PgError { severity: String::new(), sqlstate: String::new(), message: String::new(), position: None };
    let mut localized = String::new();
    while let Some(code) = r.u8().filter(|&c| c != 0) {
        let Some(value) = r.cstr() else { break };
        match code {
            b'S' => localized = text(value, 32),
            b'V' => error.severity = text(value, 32),
            b'C' => error.sqlstate = text(value, 16),
            b'M' => error.message = text(value, NOTICE_CAP),
            b'P' => error.position = std::str::from_utf8(value).ok().and_then(|p| p.parse().ok()),
            _ => {}
        }
    }
    if error.severity.is_empty() {
        error.severity = localized;
    }
    error
}
