"""Text datasets: SMS Spam, Reuters R8, 20 Newsgroups, Sentiment Labelled Sentences."""
