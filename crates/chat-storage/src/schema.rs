// @generated automatically by Diesel CLI.
//
// `diesel print-schema` against a database migrated with migrations/postgres
// (see diesel.toml). The same schema serves SQLite: migrations/sqlite creates
// the same columns with types diesel reads as these, except for the search
// index: `search_documents` exists on PostgreSQL only, `search_terms` on
// SQLite only (see `search_index.rs`).

diesel::table! {
    auth_sessions (id) {
        id -> Text,
        user_id -> Int8,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    imported_messages (original_id) {
        original_id -> Int8,
        message_id -> Int8,
    }
}

diesel::table! {
    imported_users (original_id) {
        original_id -> Int8,
        user_id -> Int8,
        original_username -> Text,
    }
}

diesel::table! {
    message_erasures (id) {
        id -> Int8,
        room_id -> Int8,
        erased_at -> Timestamp,
    }
}

diesel::table! {
    messages (id) {
        id -> Int8,
        room_id -> Int8,
        seq -> Int8,
        user_id -> Int8,
        body -> Text,
        key_id -> Text,
        client_id -> Nullable<Text>,
        created_at -> Timestamp,
        edited_at -> Nullable<Timestamp>,
        deleted_at -> Nullable<Timestamp>,
        event -> Nullable<Text>,
        event_role -> Nullable<Text>,
        event_until -> Nullable<Timestamp>,
        reply_to -> Nullable<Int8>,
        deleted_by -> Nullable<Int8>,
        change -> Nullable<Text>,
        target_seq -> Nullable<Int8>,
        reactions -> Int8,
        mls -> Nullable<Text>,
    }
}

diesel::table! {
    message_reactions (room_id, seq, emoji, user_id) {
        room_id -> Int8,
        seq -> Int8,
        emoji -> Text,
        user_id -> Int8,
        added_seq -> Int8,
    }
}

diesel::table! {
    message_versions (room_id, seq, replaced_by) {
        room_id -> Int8,
        seq -> Int8,
        replaced_by -> Int8,
        body -> Text,
        key_id -> Text,
        written_at -> Timestamp,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        session_id -> Text,
        created_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    room_bans (room_id, user_id) {
        room_id -> Int8,
        user_id -> Int8,
        banned_by -> Nullable<Int8>,
        reason -> Text,
        key_id -> Text,
        created_at -> Timestamp,
        until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    mls_devices (id) {
        id -> Int8,
        user_id -> Int8,
        device_id -> Text,
        credential -> Binary,
        signature_key -> Binary,
        created_at -> Timestamp,
    }
}

diesel::table! {
    mls_key_packages (id) {
        id -> Int8,
        device -> Int8,
        key_package -> Binary,
        last_resort -> Bool,
        not_after -> Timestamp,
        created_at -> Timestamp,
    }
}

diesel::table! {
    mls_groups (room_id) {
        room_id -> Int8,
        group_id -> Binary,
        epoch -> Int8,
        group_info -> Binary,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    mls_package_refs (ref_) {
        #[sql_name = "ref"]
        ref_ -> Binary,
        device -> Int8,
    }
}

diesel::table! {
    mls_welcomes (id) {
        id -> Int8,
        device -> Int8,
        room_id -> Int8,
        welcome -> Binary,
        group_info -> Nullable<Binary>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    room_members (room_id, user_id) {
        room_id -> Int8,
        user_id -> Int8,
        joined_at -> Timestamp,
        last_read_seq -> Int8,
        role -> Text,
        muted_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    rooms (id) {
        id -> Int8,
        name -> Text,
        kind -> Text,
        created_by -> Nullable<Int8>,
        created_at -> Timestamp,
        last_seq -> Int8,
        visibility -> Text,
        topic -> Nullable<Text>,
        encrypted -> Bool,
    }
}

diesel::table! {
    search_documents (message_id, generation) {
        message_id -> Int8,
        generation -> Int4,
        room_id -> Int8,
        terms -> Array<Int8>,
    }
}

diesel::table! {
    search_reindex (generation) {
        generation -> Int4,
        next_message_id -> Int8,
        started_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    search_terms (generation, term, room_id, message_id) {
        generation -> Int4,
        term -> Int8,
        room_id -> Int8,
        message_id -> Int8,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        username -> Text,
        password_hash -> Text,
        created_at -> Timestamp,
        disabled_at -> Nullable<Timestamp>,
        deleted_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(auth_sessions -> users (user_id));
diesel::joinable!(imported_messages -> messages (message_id));
diesel::joinable!(imported_users -> users (user_id));
diesel::joinable!(message_erasures -> rooms (room_id));
diesel::joinable!(message_reactions -> users (user_id));
diesel::joinable!(messages -> rooms (room_id));
diesel::joinable!(mls_devices -> users (user_id));
diesel::joinable!(mls_key_packages -> mls_devices (device));
diesel::joinable!(mls_welcomes -> mls_devices (device));
diesel::joinable!(mls_welcomes -> rooms (room_id));
diesel::joinable!(mls_groups -> rooms (room_id));
diesel::joinable!(messages -> users (user_id));
diesel::joinable!(refresh_tokens -> auth_sessions (session_id));
diesel::joinable!(room_bans -> rooms (room_id));
diesel::joinable!(room_members -> rooms (room_id));
diesel::joinable!(room_members -> users (user_id));
diesel::joinable!(rooms -> users (created_by));

diesel::allow_tables_to_appear_in_same_query!(
    auth_sessions,
    imported_messages,
    imported_users,
    message_erasures,
    message_reactions,
    message_versions,
    messages,
    mls_devices,
    mls_groups,
    mls_key_packages,
    mls_package_refs,
    mls_welcomes,
    refresh_tokens,
    room_bans,
    room_members,
    rooms,
    search_documents,
    search_reindex,
    search_terms,
    users,
);
