"""Accounts: users, roles and password hashes."""


class UserQueries:
    pass
