"""Access: users, authentication and login throttling."""
