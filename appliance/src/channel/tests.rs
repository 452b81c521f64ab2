use super::RingChaChaPoly;

#[test]
fn ring_cipher_is_the_channel_cipher_byte_for_byte() {
    pastiche_core::testing::cipher::conformance::<RingChaChaPoly>();
}
