"""evertrain.continual"""
