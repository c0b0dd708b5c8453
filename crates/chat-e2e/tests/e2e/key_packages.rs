//! KeyPackages: generated in batches, single-use or last-resort, checked
//! when claimed.

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    BasicCredential, Ciphersuite, Credential, CredentialWithKey, KeyPackage, MlsMessageBodyIn,
    MlsMessageIn, MlsMessageOut, ProtocolVersion,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

use chat_e2e::{CIPHERSUITE, E2eError, Fingerprint};
use chat_protocol::mls::decode;

use crate::support::{device, room, user};

fn parse_key_package(bytes: &[u8]) -> KeyPackage {
    let provider = OpenMlsRustCrypto::default();
    match MlsMessageIn::tls_deserialize_exact(bytes)
        .expect("an MLS message")
        .extract()
    {
        MlsMessageBodyIn::KeyPackage(key_package) => key_package
            .validate(
                openmls::prelude::OpenMlsProvider::crypto(&provider),
                ProtocolVersion::Mls10,
            )
            .expect("a valid KeyPackage"),
        other => panic!("expected a KeyPackage, got {other:?}"),
    }
}

#[test]
fn a_last_resort_key_package_can_be_used_more_than_once() {
    let mut bob = device("bob");
    let last_resort = bob
        .last_resort_key_package()
        .expect("a last-resort package");
    assert!(parse_key_package(&last_resort).last_resort());

    for (creator, name) in [("alice", "first"), ("carol", "second")] {
        let mut creator = device(creator);
        let room = room(name);
        creator.create_group(&room).expect("created");
        let commit = creator
            .add_members(&room, std::slice::from_ref(&last_resort))
            .expect("added");
        creator.merge_pending_commit(&room).expect("merged");
        bob.join(&room, commit.welcome.as_ref().expect("a Welcome"))
            .expect("Bob joins with the same last-resort package");
        let message = creator.encrypt(&room, name.as_bytes()).expect("encrypted");
        assert!(matches!(
            bob.process(&room, &message),
            Ok(chat_e2e::Incoming::Message { plaintext, .. }) if plaintext == name.as_bytes()
        ));
    }
    assert_eq!(bob.rooms().count(), 2);
}

#[test]
fn an_ordinary_key_package_opens_one_welcome_only() {
    let mut bob = device("bob");
    let key_packages = bob.key_packages(1).expect("a key package");
    assert!(!parse_key_package(&key_packages[0]).last_resort());

    let mut welcomes = Vec::new();
    for (creator, name) in [("alice", "first"), ("carol", "second")] {
        let mut creator = device(creator);
        let room = room(name);
        creator.create_group(&room).expect("created");
        let commit = creator.add_members(&room, &key_packages).expect("added");
        welcomes.push((room, commit.welcome.expect("a Welcome")));
    }
    bob.join(&welcomes[0].0, &welcomes[0].1)
        .expect("the first Welcome opens");
    assert!(matches!(
        bob.join(&welcomes[1].0, &welcomes[1].1),
        Err(E2eError::NoMatchingKeyPackage)
    ));
    assert_eq!(bob.rooms().count(), 1);
}

#[test]
fn a_welcome_for_another_device_is_refused() {
    let mut alice = device("alice");
    let mut bob_phone = device("bob");
    let mut bob_laptop = device("bob");
    let room = room("elsewhere");
    alice.create_group(&room).expect("created");
    let commit = alice
        .add_members(&room, &bob_phone.key_packages(1).expect("a key package"))
        .expect("added");
    let welcome = commit.welcome.expect("a Welcome");
    assert!(matches!(
        bob_laptop.join(&room, &welcome),
        Err(E2eError::NoMatchingKeyPackage)
    ));
    bob_phone.join(&room, &welcome).expect("the phone joins");
}

#[test]
fn an_upload_holds_the_requested_batch_and_one_last_resort_package_of_this_device() {
    let mut bob = device("bob");
    let upload = bob.key_package_upload(3).expect("an upload");
    assert_eq!(upload.device_id, bob.device_id());
    assert_eq!(upload.key_packages.len(), 3);

    let ordinary: Vec<KeyPackage> = upload
        .key_packages
        .iter()
        .map(|text| parse_key_package(&decode(text).expect("base64")))
        .collect();
    let last_resort = parse_key_package(
        &decode(
            upload
                .last_resort
                .as_deref()
                .expect("a last-resort package"),
        )
        .expect("base64"),
    );
    assert!(ordinary.iter().all(|package| !package.last_resort()));
    assert!(last_resort.last_resort());
    for package in ordinary.iter().chain([&last_resort]) {
        assert_eq!(package.ciphersuite(), CIPHERSUITE);
        assert_eq!(
            package.leaf_node().signature_key().as_slice(),
            bob.signature_key()
        );
        let credential = BasicCredential::try_from(package.leaf_node().credential().clone())
            .expect("a basic credential");
        assert_eq!(credential.identity(), b"bob");
    }
    let init_keys: std::collections::HashSet<Vec<u8>> = ordinary
        .iter()
        .map(|package| package.hpke_init_key().as_slice().to_vec())
        .collect();
    assert_eq!(init_keys.len(), 3, "every KeyPackage has its own init key");

    let registration = bob.registration().expect("a registration");
    assert_eq!(registration.device_id, bob.device_id());
    assert_eq!(
        registration.device_id,
        Fingerprint::of(bob.signature_key()).device_id()
    );
    assert_eq!(
        decode(&registration.signature_key).expect("base64"),
        bob.signature_key()
    );
    let credential =
        Credential::tls_deserialize_exact(decode(&registration.credential).expect("base64"))
            .expect("a credential");
    assert_eq!(
        BasicCredential::try_from(credential)
            .expect("a basic credential")
            .identity(),
        b"bob"
    );
}

#[test]
fn a_tampered_key_package_is_refused() {
    let mut alice = device("alice");
    let mut bob = device("bob");
    let room = room("tamper");
    alice.create_group(&room).expect("created");
    let mut key_package = bob.key_packages(1).expect("a key package").remove(0);
    let middle = key_package.len() / 2;
    key_package[middle] ^= 0x01;
    let refused = alice.add_members(&room, &[key_package]);
    assert!(
        matches!(
            refused,
            Err(E2eError::InvalidKeyPackage(_) | E2eError::Malformed(_))
        ),
        "got {refused:?}"
    );
    assert!(!alice.has_pending_commit(&room).expect("a room"));
    assert_eq!(alice.epoch(&room).expect("an epoch"), 0);
}

#[test]
fn a_key_package_of_another_ciphersuite_is_refused() {
    let provider = OpenMlsRustCrypto::default();
    let other = Ciphersuite::MLS_128_DHKEMP256_AES128GCM_SHA256_P256;
    let signer = SignatureKeyPair::new(other.signature_algorithm()).expect("a key pair");
    let bundle = KeyPackage::builder()
        .build(
            other,
            &provider,
            &signer,
            CredentialWithKey {
                credential: BasicCredential::new(b"bob".to_vec()).into(),
                signature_key: signer.public().into(),
            },
        )
        .expect("a KeyPackage");
    let bytes = MlsMessageOut::from(bundle.key_package().clone())
        .to_bytes()
        .expect("serialized");

    let mut alice = device("alice");
    let room = room("suites");
    alice.create_group(&room).expect("created");
    assert!(matches!(
        alice.add_members(&room, &[bytes]),
        Err(E2eError::InvalidKeyPackage(_))
    ));
}

#[test]
fn a_key_package_whose_credential_names_no_user_is_refused() {
    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("a key pair");
    let bundle = KeyPackage::builder()
        .build(
            CIPHERSUITE,
            &provider,
            &signer,
            CredentialWithKey {
                credential: BasicCredential::new(b"not a name!".to_vec()).into(),
                signature_key: signer.public().into(),
            },
        )
        .expect("a KeyPackage");
    let bytes = MlsMessageOut::from(bundle.key_package().clone())
        .to_bytes()
        .expect("serialized");

    let mut alice = device("alice");
    let room = room("names");
    alice.create_group(&room).expect("created");
    assert!(matches!(
        alice.add_members(&room, &[bytes]),
        Err(E2eError::InvalidKeyPackage(_))
    ));
    // And a removal of someone who is not there says so.
    assert!(matches!(
        alice.remove_members(&room, &[user("nobody")]),
        Err(E2eError::NotAMember(_))
    ));
}
