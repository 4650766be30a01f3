"""evertrain.adapters"""
