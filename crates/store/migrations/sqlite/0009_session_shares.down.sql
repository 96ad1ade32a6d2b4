DROP TABLE session_shares;
