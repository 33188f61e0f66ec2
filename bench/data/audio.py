"""Audio datasets: the Free Spoken Digit Dataset (FSDD)."""
