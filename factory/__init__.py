"""model-factory: a folder of data in, a fine-tuned model that earned its promotion out."""
