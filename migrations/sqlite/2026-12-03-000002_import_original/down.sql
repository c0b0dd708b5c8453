DROP TABLE imported_messages;
DROP TABLE imported_users;
