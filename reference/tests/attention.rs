//! Exactly known attention rows: one key, equal logits, cancellation, huge logits, NaN, masks.

use tessera_reference::attention_row;

#[test]
fn one_key_returns_its_value() {
    let v = [1.5, -2.25e-30, 3.0e38, 7.0];
    let out = attention_row(&[0.3, 0.1, -4.0, 2.0], &[1.0, 2.0, 3.0, 4.0], &v, 0.125);
    assert_eq!(out, v);
}

#[test]
fn no_keys_give_zeros() {
    assert_eq!(attention_row(&[1.0, 2.0], &[], &[], 1.0), vec![0.0, 0.0]);
}
