"""evertrain.laws"""
