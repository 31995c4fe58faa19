"""Writers of finished arrays: PNG, TensorBoard, HTML pieces, and each analysis's files."""
