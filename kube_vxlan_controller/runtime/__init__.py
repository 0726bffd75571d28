"""What the actors run on, not actors themselves: the scheduler (delayed tells), the registry (who runs),
the board (what the query actor shows)."""
