"""bertforge.cli"""
