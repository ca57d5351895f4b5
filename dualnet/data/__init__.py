"""Data sources for the Data layer (IDX, NPZ, LMDB) and Caffe's transforms."""
